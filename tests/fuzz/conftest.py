"""ONE development host for the whole fuzz suite, on the session's Azurite, serving the product
with valid credentials at hand (a loopback Entra issuer), a loopback Graph and managed identity
(so that an Event Grid event asking for discovery runs to completion), `BOOTSTRAP_AUTH=user`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import event

from devhost.azurite import Azurite
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from tests.fuzz.wire import Answer, Request, assert_honest, send
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env

DEVICE_SCOPE = "Bundle.Request"


@dataclass
class Target:
    """The host under fuzz, its tokens and the canary that must never come back."""

    host: DevHostProcess
    azurite: Azurite
    device_token: str
    admin_token: str
    canary: str
    sent: int = 0
    accepted_reports: list[tuple[str, str]] = field(default_factory=list)

    def __repr__(self) -> str:  # a failing example prints its arguments: no tokens in it
        return f"Target({self.host.base_url})"

    def send(self, request: Request) -> Answer:
        """Send, then check what every answer must be (tokens and canary never echoed)."""
        answer = send(self.host.port, request)
        self.sent += 1
        event(f"answered {answer.status}")  # --hypothesis-show-statistics shows the spread
        secrets_ = (self.canary, self.device_token.split(".")[2], self.admin_token.split(".")[2])
        assert_honest(request, answer, secrets=secrets_)
        return answer


@pytest.fixture(scope="package")
def target(azurite: Azurite) -> Iterator[Target]:
    with (
        EntraIssuer() as issuer,
        FakeManagedIdentity() as identity,
        FakeGraph(identity, users=5) as graph,
    ):
        env = product_env(
            azurite.connection_string,
            AAD_AUTHORITY_HOST=issuer.authority_host,
            BOOTSTRAP_AUTH="user",
            GRAPH_BASE_URL=graph.graph_base_url,
            **identity.environment(),
        )
        with DevHostProcess(env) as host:
            fuzzed = Target(
                host=host,
                azurite=azurite,
                device_token=issuer.mint_access_token(scp=f"user_impersonation {DEVICE_SCOPE}"),
                admin_token=issuer.mint_admin_token(),
                canary="cnry" + secrets.token_hex(6),
            )
            yield fuzzed
            print(f"\nfuzz: {fuzzed.sent} generated requests to one host")
