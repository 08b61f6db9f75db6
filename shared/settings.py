"""One typed settings object, read lazily and validated as a whole.

Every value that later reaches a ccmsetup command line, a URL or a schedule is checked here, so a
bad app setting fails with one line naming it instead of surfacing as a broken bundle or a stack
trace. `python -m shared.settings` runs the same check from a shell.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal, get_args
from urllib.parse import parse_qs, urlsplit

from croniter import croniter

from shared.errors import SettingError
from shared.ids import parse_guid

DEVELOPMENT: Final = "Development"
MAX_BUNDLE_TTL_MINUTES: Final = 1440

# ConfigMgr reserves these names: a site code may not be one of them.
_RESERVED_SITE_CODES: Final = frozenset({"AUX", "CON", "NUL", "PRN", "SMS"})
_SITE_CODE = re.compile(r"[A-Z0-9]{3}")
_DNS_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
# CCMHOSTNAME: a CMG host and an optional path such as /CCM_Proxy_ServerAuth/72457598037527932.
_CCM_HOSTNAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})+(?:/[A-Za-z0-9_.-]+)*")
# CCMSETUP_SOURCE: ccmsetup's /source takes "a local or UNC path" that it reads over SMB (the
# ConfigMgr documentation "Client installation parameters and properties"), so no URL. A folder
# name may hold spaces and parentheses (the command line quotes it) but nothing that cmd.exe or
# PowerShell would act on: " % ^ & | < > ! ; $ ` ' { } * ? and no '/' (it would start a switch).
# `$` only ends a share name, as in the hidden share \\server\SMS_DP$ (not an expansion there).
_FOLDER = r"[^\x00-\x1f\x7f<>:\"/\\|?*%^&!;$`'{}]+"
_DRIVE_PATH = rf"[A-Za-z]:\\(?:{_FOLDER}(?:\\{_FOLDER})*\\?)?"
_SHARE = r"[A-Za-z0-9_.-](?:[A-Za-z0-9_. -]*[A-Za-z0-9_.-])?\$?"
_UNC_PATH = rf"\\\\{_HOST_NAME.pattern}\\{_SHARE}(?:\\{_FOLDER})*\\?"
_WINDOWS_PATH = re.compile(rf"{_DRIVE_PATH}|{_UNC_PATH}")
# Characters a shell or cmd.exe would treat specially (& ; % ! ' " ( ) ^) are refused.
_APP_ID_URI = re.compile(r"(?:https://|api://)[A-Za-z0-9._~:/=+-]+")
# AADTENANTNAME: what `dsregcmd /status` shows as TenantName, e.g. "contoso" (the ConfigMgr
# documentation's example) or "Contoso Ltd": printable text that the command line can quote.
_URL_FIELD = re.compile(r"[A-Za-z0-9._()-]{1,90}")
_TENANT_NAME = re.compile(r"[^\x00-\x1f\x7f\"%^&|<>!]{1,256}")
BootstrapAuth = Literal["device", "user", "device+user"]
BOOTSTRAP_AUTH_MODES: Final[tuple[BootstrapAuth, ...]] = get_args(BootstrapAuth)
# Entra ID device trustType values (Graph `device.trustType`), in Graph's spelling.
TRUST_TYPES: Final = ("AzureAd", "ServerAd", "Workplace")
# DISCOVERY_GROUPS: every security group, none, or these group object ids.
GroupScope = Literal["all", "none"] | tuple[str, ...]
# /groups/delta takes `$filter=id eq ... or ...` for at most 50 groups.
MAX_DISCOVERY_GROUP_IDS: Final = 50
_EVENT_GRID_URL_FIELDS: Final = ("azuresubscriptionid", "resourcegroup", "partnertopic", "location")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


@dataclass(frozen=True, slots=True)
class Settings:
    """The app's settings, as docs/contract.md names them. Build with `Settings.from_env`."""

    environment: str
    tenant_id: str
    tenant_name: str
    server_app_id: str
    resource_uri: str
    client_app_id: str
    authority_host: str
    graph_base_url: str
    ccm_hostname: str
    site_code: str
    management_point: str | None
    ccmsetup_source: str | None
    no_crl_check: bool
    bundle_ttl_minutes: int
    signing_key_id: str | None
    signing_key_file: Path | None
    discovery_full_schedule: str
    discovery_delta_schedule: str
    discovery_time_budget_seconds: int
    discovery_lease_seconds: int
    admin_role: str
    bootstrap_auth: BootstrapAuth = "device"
    device_trust_types: frozenset[str] = frozenset({"AzureAd", "ServerAd"})
    public_hostnames: tuple[str, ...] = ()
    device_scope: str = "Bundle.Request"
    graph_subscription_schedule: str = "0 17 */6 * * *"
    graph_notification_url: str | None = None
    discovery_groups: GroupScope = "none"
    discovery_coalesce_seconds: int = 15
    # Rotation: a second bundle-signing key that /api/jwks publishes but nothing signs with.
    signing_next_key_id: str | None = None
    signing_next_key_file: Path | None = None
    # The failure explainer calls a device stuck after this long at bundle-received/installing.
    device_stuck_minutes: int = 120

    @property
    def is_development(self) -> bool:
        return self.environment == DEVELOPMENT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Validate every setting; the first bad one raises `SettingError` naming it."""
        reader = _Reader(env)
        environment = reader.optional("AZURE_FUNCTIONS_ENVIRONMENT") or "Production"
        settings = cls(
            environment=environment,
            tenant_id=reader.guid("AAD_TENANT_ID"),
            tenant_name=reader.tenant_name("AAD_TENANT_NAME"),
            server_app_id=reader.guid("AAD_SERVER_APP_ID"),
            resource_uri=reader.app_id_uri("AAD_RESOURCE_URI"),
            client_app_id=reader.guid("AAD_CLIENT_APP_ID"),
            authority_host=reader.url("AAD_AUTHORITY_HOST", "https://login.microsoftonline.com"),
            graph_base_url=reader.url("GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0"),
            ccm_hostname=reader.ccm_hostname("CCM_HOSTNAME"),
            site_code=reader.site_code("SMS_SITE_CODE"),
            management_point=reader.management_point("SMS_MP"),
            ccmsetup_source=reader.windows_path("CCMSETUP_SOURCE"),
            no_crl_check=reader.boolean("CCMSETUP_NO_CRL_CHECK", default=False),
            bundle_ttl_minutes=reader.integer(
                "BUNDLE_TTL_MINUTES", default=30, low=1, high=MAX_BUNDLE_TTL_MINUTES
            ),
            signing_key_id=reader.key_vault_key_id("BUNDLE_SIGNING_KEY_ID"),
            signing_key_file=reader.path("BUNDLE_SIGNING_KEY_FILE"),
            discovery_full_schedule=reader.ncrontab("DISCOVERY_FULL_SCHEDULE", "0 0 2 * * 0"),
            discovery_delta_schedule=reader.ncrontab("DISCOVERY_DELTA_SCHEDULE", "0 */5 * * * *"),
            discovery_time_budget_seconds=reader.integer(
                "DISCOVERY_TIME_BUDGET_SECONDS", default=240, low=5, high=3600
            ),
            discovery_lease_seconds=reader.integer(
                "DISCOVERY_LEASE_SECONDS", default=120, low=5, high=3600
            ),
            admin_role=reader.token("ADMIN_ROLE", "Bootstrap.Admin"),
            bootstrap_auth=reader.bootstrap_auth("BOOTSTRAP_AUTH"),
            device_trust_types=reader.trust_types("DEVICE_TRUST_TYPES"),
            public_hostnames=reader.host_names("PUBLIC_HOSTNAMES"),
            device_scope=reader.token("DEVICE_SCOPE", "Bundle.Request"),
            graph_subscription_schedule=reader.ncrontab(
                "GRAPH_SUBSCRIPTION_SCHEDULE", "0 17 */6 * * *"
            ),
            graph_notification_url=reader.event_grid_url("GRAPH_NOTIFICATION_URL"),
            discovery_groups=reader.group_scope("DISCOVERY_GROUPS"),
            discovery_coalesce_seconds=reader.integer(
                "DISCOVERY_COALESCE_SECONDS", default=15, low=0, high=600
            ),
            signing_next_key_id=reader.key_vault_key_id("BUNDLE_SIGNING_NEXT_KEY_ID"),
            signing_next_key_file=reader.path("BUNDLE_SIGNING_NEXT_KEY_FILE"),
            # ccmsetup over a CMG takes 10-30 minutes; 120 is four times that.
            device_stuck_minutes=reader.integer(
                "DEVICE_STUCK_MINUTES", default=120, low=5, high=10080
            ),
        )
        if not settings.is_development and not (
            settings.signing_key_id or settings.signing_key_file
        ):
            raise SettingError(
                "BUNDLE_SIGNING_KEY_ID",
                "a Key Vault key id, or BUNDLE_SIGNING_KEY_FILE with a PEM private key, "
                "outside Development",
            )
        return settings


@cache
def get_settings() -> Settings:
    """The process's settings, validated on first use (never at import)."""
    return Settings.from_env(os.environ)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def value_reader(values: Mapping[str, str]) -> _Reader:
    """The settings' validators over other values (an install profile's fields): one
    validation for every value that reaches a ccmsetup command line."""
    return _Reader(values)


class _Reader:
    """Reads one setting at a time and raises `SettingError` with what was expected."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def required(self, name: str, expected: str) -> str:
        value = self.optional(name)
        if value is None:
            raise SettingError(name, expected, missing=True)
        return value

    def _check(self, name: str, value: str, ok: bool, expected: str) -> str:
        if not ok:
            # A URL with user:password@ is refused without echoing the password into a log.
            shown = "<a URL with a user name or password, not shown>" if "@" in value else value
            raise SettingError(name, expected, value=shown)
        return value

    def guid(self, name: str) -> str:
        expected = "a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47"
        value = self.required(name, expected)
        guid = parse_guid(value)
        return self._check(name, guid or value, guid is not None, expected)

    def tenant_name(self, name: str) -> str:
        expected = (
            "the tenant name dsregcmd /status shows, such as contoso or Contoso Ltd "
            '(printable, at most 256 characters, no " % ^ & | < > !)'
        )
        value = self.required(name, expected)
        return self._check(name, value, _full(_TENANT_NAME, value), expected)

    def bootstrap_auth(self, name: str) -> BootstrapAuth:
        value = (self.optional(name) or "device").lower()
        for mode in BOOTSTRAP_AUTH_MODES:
            if value == mode:
                return mode
        raise SettingError(name, "device, user or device+user", value=value)

    def trust_types(self, name: str) -> frozenset[str]:
        value = self.optional(name) or "AzureAd,ServerAd"
        canonical = {trust.lower(): trust for trust in TRUST_TYPES}
        items = [item.strip().lower() for item in value.split(",")]
        if not items or any(item not in canonical for item in items):
            raise SettingError(name, "a comma list of AzureAd, ServerAd, Workplace", value=value)
        return frozenset(canonical[item] for item in items)

    def host_names(self, name: str) -> tuple[str, ...]:
        value = self.optional(name)
        if value is None:
            return ()
        hosts = tuple(item.strip().lower() for item in value.split(","))
        ok = all("." in host and _full(_HOST_NAME, host) for host in hosts)
        self._check(name, value, ok, "a comma list of DNS host names such as boot.contoso.com")
        return hosts

    def event_grid_url(self, name: str) -> str | None:
        value = self.optional(name)
        if value is None:
            return None
        expected = (
            "EventGrid:?azuresubscriptionid=<guid>&resourcegroup=<name>"
            "&partnertopic=<name>&location=<region>"
        )
        scheme, _, query = value.partition(":?")
        fields = {key.lower(): values for key, values in parse_qs(query).items()}
        ok = scheme.lower() == "eventgrid" and all(
            len(fields.get(key, ())) == 1 and _full(_URL_FIELD, fields[key][0])
            for key in _EVENT_GRID_URL_FIELDS
        )
        ok = ok and parse_guid(fields["azuresubscriptionid"][0]) is not None
        return self._check(name, value, ok, expected)

    def group_scope(self, name: str) -> GroupScope:
        value = self.optional(name) or "none"
        if value.lower() in ("all", "none"):
            return "all" if value.lower() == "all" else "none"
        ids = tuple(parse_guid(item.strip()) for item in value.split(","))
        expected = f"all, none, or a comma list of at most {MAX_DISCOVERY_GROUP_IDS} group ids"
        ok = all(ids) and len(ids) <= MAX_DISCOVERY_GROUP_IDS
        self._check(name, value, ok, expected)
        return tuple(dict.fromkeys(i for i in ids if i))

    def app_id_uri(self, name: str) -> str:
        expected = "the server app's App ID URI, such as https://contososerver or api://<guid>"
        value = self.required(name, expected)
        return self._check(name, value, _full(_APP_ID_URI, value) and '"' not in value, expected)

    def ccm_hostname(self, name: str) -> str:
        expected = (
            "the CMG host and path without a scheme, such as "
            "CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72186325152220500"
        )
        value = self.required(name, expected)
        return self._check(name, value, _full(_CCM_HOSTNAME, value), expected)

    def site_code(self, name: str) -> str:
        expected = "a three-character site code of letters and digits, such as ABC"
        value = self.required(name, expected).upper()
        ok = _full(_SITE_CODE, value) and value not in _RESERVED_SITE_CODES
        return self._check(name, value, ok, expected)

    def management_point(self, name: str) -> str | None:
        """SMSMP: the management point's FQDN, or `https://` and its FQDN when it accepts HTTPS
        only (the ConfigMgr documentation's two forms); nothing else reaches the command line."""
        value = self.optional(name)
        if value is None:
            return None
        expected = (
            "the management point's FQDN (mp.contoso.com) or https:// and its FQDN "
            "(https://mp.contoso.com), with no user name, password, port, path or query"
        )
        scheme, separator, host = value.rpartition("://")
        ok = (not separator or scheme.lower() == "https") and "." in host
        ok = ok and _full(_HOST_NAME, host)
        return self._check(name, value, ok, expected)

    def windows_path(self, name: str) -> str | None:
        value = self.optional(name)
        if value is None:
            return None
        expected = (
            r"a local or UNC folder such as C:\CLIENT or \\server\share\client (not a URL; "
            "no \" % ^ & | < > ! ; $ ` ' { } * ?)"
        )
        ok = _full(_WINDOWS_PATH, value) and len(value) <= 240
        return self._check(name, value, ok, expected)

    def url(self, name: str, default: str) -> str:
        value = (self.optional(name) or default).rstrip("/")
        parts = urlsplit(value)
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and is_loopback_host(parts.hostname)
        )
        ok = secure and bool(parts.hostname) and not parts.query and not parts.fragment
        return self._check(name, value, ok, "an https URL (http only for loopback)")

    def key_vault_key_id(self, name: str) -> str | None:
        value = self.optional(name)
        if value is None:
            return None
        # Versioned: a version the vault makes later (its rotation policy, `az keyvault key
        # rotate`) must not sign until an operator rotates, or devices that pinned the current
        # key would refuse every bundle (README "Rotating the bundle-signing key").
        expected = (
            "a versioned Key Vault key id such as "
            "https://<vault>.vault.azure.net/keys/<name>/<version>"
        )
        parts = urlsplit(value)
        segments = parts.path.strip("/").split("/")
        ok = parts.scheme == "https" or (
            parts.scheme == "http" and is_loopback_host(parts.hostname)
        )
        ok = ok and len(segments) == 3 and segments[0] == "keys" and all(segments)
        return self._check(name, value, ok, expected)

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        if value is None:
            return None
        path = Path(value)
        if not path.is_file():
            raise SettingError(name, "a readable PEM private key file", value=value)
        return path

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingError(name, "true or false", value=value)

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        expected = f"a whole number from {low} to {high}"
        try:
            number = int(value)
        except ValueError:
            raise SettingError(name, expected, value=value) from None
        self._check(name, value, low <= number <= high, expected)
        return number

    def ncrontab(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        expected = "a six-field NCRONTAB schedule such as '0 */5 * * * *'"
        ok = len(value.split()) == 6 and croniter.is_valid(value, second_at_beginning=True)
        return self._check(name, value, ok, expected)

    def token(self, name: str, default: str) -> str:
        value = self.optional(name) or default
        ok = bool(re.fullmatch(r"[A-Za-z0-9._-]{1,120}", value))
        return self._check(name, value, ok, "an app role value of letters, digits, '.', '_', '-'")


def _full(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def main() -> int:
    """`python -m shared.settings`: check the environment; one line either way."""
    try:
        settings = get_settings()
    except SettingError as error:
        print(f"setting error: {error}", file=sys.stderr)
        return 1
    print(f"settings valid for tenant {settings.tenant_id} ({settings.environment})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
