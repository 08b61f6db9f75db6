"""The app's `shutdown` hook, through the development host: stopping the host closes every client
the app opened (storage, tokens), so nothing is reported unclosed on the way out."""

from __future__ import annotations

import urllib.request

from devhost.azurite import Azurite
from devtools.fakes.entra import EntraIssuer
from tests.support.devhost import DevHostProcess
from tests.support.issuer import entra_issuer
from tests.support.settings import product_env

__all__ = ["entra_issuer"]


def test_stopping_the_host_closes_the_clients_the_app_opened(
    azurite: Azurite, entra_issuer: EntraIssuer
) -> None:
    env = product_env(azurite.connection_string, AAD_AUTHORITY_HOST=entra_issuer.authority_host)
    with DevHostProcess(env) as host:
        for path in ("/api/health", "/api/jwks"):  # storage, and the signing keys
            with urllib.request.urlopen(host.url(path), timeout=60) as response:
                assert response.status == 200
        assert host.stop() == 0
        output = host.output()
    assert "Host stopped" in output
    assert "Unclosed" not in output
    assert "shutdown hook failed" not in output
