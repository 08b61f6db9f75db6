"""Storage access from `AzureWebJobsStorage` in every form, and its behaviour against Azurite."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jwt
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.azurite import ACCOUNT_KEY, Azurite, AzuriteTls, running_azurite
from devtools.fakes.identity import FakeManagedIdentity
from shared.errors import SettingError
from shared.storage import DEVELOPMENT_CONNECTION_STRING, SETTING, Storage, StorageConfig
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env
from tests.support.tls import self_signed_certificate

KEY_CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey=a2V5;"
    "EndpointSuffix=core.windows.net"
)


def test_connection_string_is_used_as_given() -> None:
    assert StorageConfig.from_env({SETTING: KEY_CONNECTION}) == StorageConfig(
        connection_string=KEY_CONNECTION
    )


def test_sas_connection_string_is_accepted() -> None:
    sas = (
        "BlobEndpoint=https://contoso.blob.core.windows.net;"
        "QueueEndpoint=https://contoso.queue.core.windows.net;"
        "TableEndpoint=https://contoso.table.core.windows.net;SharedAccessSignature=sv=2022&sig=x"
    )
    assert StorageConfig.from_env({SETTING: sas}).connection_string == sas


@pytest.mark.parametrize("value", ["UseDevelopmentStorage=true", " usedevelopmentstorage = TRUE "])
def test_development_storage_means_azurite_on_its_default_ports(value: str) -> None:
    config = StorageConfig.from_env({SETTING: value})
    assert config.connection_string == DEVELOPMENT_CONNECTION_STRING
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in DEVELOPMENT_CONNECTION_STRING


def test_identity_based_account_name() -> None:
    config = StorageConfig.from_env({f"{SETTING}__accountName": "contoso"})
    assert config == StorageConfig(
        table_endpoint="https://contoso.table.core.windows.net",
        queue_endpoint="https://contoso.queue.core.windows.net",
    )


def test_identity_based_service_uris_and_user_assigned_identity() -> None:
    client_id = str(uuid.uuid4())
    config = StorageConfig.from_env(
        {
            f"{SETTING}__tableServiceUri": "https://t.example.net/acct",
            f"{SETTING}__queueServiceUri": "https://q.example.net/acct",
            f"{SETTING}__clientId": client_id,
            f"{SETTING}__credential": "managedidentity",
        }
    )
    assert config == StorageConfig(
        table_endpoint="https://t.example.net/acct",
        queue_endpoint="https://q.example.net/acct",
        client_id=client_id,
        managed_identity_only=True,
    )


@pytest.mark.parametrize(
    ("env", "message_start"),
    [
        ({}, "AzureWebJobsStorage is required"),
        ({SETTING: "not a connection string"}, "AzureWebJobsStorage is malformed"),
        ({SETTING: "AccountName=contoso"}, "AzureWebJobsStorage is malformed"),
        (
            {f"{SETTING}__tableServiceUri": "https://t.example.net"},
            "AzureWebJobsStorage is malformed",
        ),
        (
            {
                f"{SETTING}__tableServiceUri": "http://t.example.net",
                f"{SETTING}__queueServiceUri": "https://q.example.net",
            },
            "AzureWebJobsStorage__tableServiceUri is malformed",
        ),
    ],
)
def test_bad_forms_name_the_setting(env: dict[str, str], message_start: str) -> None:
    with pytest.raises(SettingError) as caught:
        StorageConfig.from_env(env)
    assert str(caught.value).startswith(message_start)
    assert "\n" not in str(caught.value)


def test_an_account_key_is_never_in_the_error() -> None:
    secret = base64.b64encode(b"very secret key").decode()
    with pytest.raises(SettingError) as caught:
        StorageConfig.from_env({SETTING: f"AccountKey={secret}"})
    assert secret not in str(caught.value)


async def test_tables_are_created_on_first_use(storage: Storage, azurite: Azurite) -> None:
    name = f"t{uuid.uuid4().hex}"
    table = await storage.table(name)
    await table.create_entity({"PartitionKey": "p", "RowKey": "r", "value": 1})
    plain = TableServiceClient.from_connection_string(azurite.connection_string)
    assert name in {t.name for t in plain.list_tables()}
    assert plain.get_table_client(name).get_entity("p", "r")["value"] == 1


async def test_queues_are_created_on_first_use_and_base64_on_the_wire(
    storage: Storage, azurite: Azurite
) -> None:
    name = f"q-{uuid.uuid4().hex}"
    client = await storage.queue(name)
    await client.send_message('{"stage": "installed", "hostname": "PC-Ü1"}')
    plain = QueueClient.from_connection_string(azurite.connection_string, name)
    [message] = plain.peek_messages()
    assert (
        message.content
        == base64.b64encode('{"stage": "installed", "hostname": "PC-Ü1"}'.encode()).decode()
    )
    [received] = [m async for m in client.receive_messages()]
    assert received.content == '{"stage": "installed", "hostname": "PC-Ü1"}'


async def test_ping_answers_when_azurite_is_up(storage: Storage) -> None:
    await storage.ping()


# Identity-based storage against Azurite: https with a test certificate, `--oauth basic`, and
# managed-identity tokens (JWTs, as Entra issues them) from a loopback App Service endpoint.


class JwtManagedIdentity(FakeManagedIdentity):
    """The loopback managed-identity endpoint, minting JWT access tokens Azurite can inspect."""

    TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

    def __init__(self) -> None:
        super().__init__()
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def mint(self, resource: str) -> str:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.TENANT}/",
            "tid": self.TENANT,
            "oid": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        return jwt.encode(claims, self._signing_key, algorithm="RS256")


def oauth_azurite_tls(folder: Path) -> AzuriteTls:
    """https with a throw-away certificate, and OAuth bearer tokens accepted."""
    certificate = self_signed_certificate(folder)
    return AzuriteTls(cert=certificate.cert, key=certificate.key, oauth=True)


def test_identity_based_storage_through_the_host(tmp_path: Path) -> None:
    """The product's health check reaches Azurite with managed-identity tokens only."""
    tls = oauth_azurite_tls(tmp_path)
    with running_azurite(tls=tls) as azurite, JwtManagedIdentity() as identity:
        env = product_env(
            "",  # no connection string: identity-based settings below
            AzureWebJobsStorage__tableServiceUri=azurite.service_uri("table"),
            AzureWebJobsStorage__queueServiceUri=azurite.service_uri("queue"),
            SSL_CERT_FILE=str(tls.cert),  # trust the test certificate, as a corporate CA would be
            **identity.environment(),
        )
        with DevHostProcess(env) as host:
            with urllib.request.urlopen(host.url("/api/health"), timeout=60) as response:
                body = json.load(response)
            log = host.output()
    assert body == {"status": "healthy"}  # storage reachable (anonymous callers see no more)
    assert "https://storage.azure.com" in identity.resources
    assert ACCOUNT_KEY not in log


def test_azurite_with_oauth_refuses_a_request_without_a_valid_token(tmp_path: Path) -> None:
    """The check above can fail: a token Azurite does not accept makes storage unreachable."""
    tls = oauth_azurite_tls(tmp_path)
    with running_azurite(tls=tls) as azurite, FakeManagedIdentity() as opaque_tokens:
        env = product_env(
            "",
            AzureWebJobsStorage__tableServiceUri=azurite.service_uri("table"),
            AzureWebJobsStorage__queueServiceUri=azurite.service_uri("queue"),
            SSL_CERT_FILE=str(tls.cert),
            **opaque_tokens.environment(),
        )
        with DevHostProcess(env) as host:
            try:
                urllib.request.urlopen(host.url("/api/health"), timeout=60)
                status = 200
            except urllib.error.HTTPError as error:
                status = error.code
    # Refused (403 from Azurite): health is unhealthy, 503 like any storage failure.
    assert status == 503
