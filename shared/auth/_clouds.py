"""Which security token service signs v1 access tokens in the cloud of `AAD_AUTHORITY_HOST`.

v2 tokens carry `iss` `{authority}/{tenant}/v2.0`, so the authority host alone fixes them. v1
tokens carry the v1 STS host of the authority's cloud instead, which is not the authority host:

- global cloud: login.microsoftonline.com, login.windows.net, login.microsoft.com
  -> `https://sts.windows.net/{tenant}/`
- US Government: login.microsoftonline.us, login.usgovcloudapi.net
  -> `https://sts.windows.net/{tenant}/` (the same v1 STS as the global cloud)
- China (operated by 21Vianet): login.partner.microsoftonline.cn, login.chinacloudapi.cn
  -> `https://sts.chinacloudapi.cn/{tenant}/`

Sources: authority hosts from "National clouds" (learn.microsoft.com/entra/identity-platform/
authentication-national-cloud) and the aliases Entra itself lists in its instance-discovery
metadata (`https://login.microsoftonline.com/common/discovery/instance`); v1 issuers from
Microsoft's answer "What are the token issuers for the sovereign cloud?" (learn.microsoft.com/
answers/questions/1190472), which also says that US Government v1 tokens keep sts.windows.net.
Azure Germany (login.microsoftonline.de) closed in October 2021 and is not listed.

A loopback authority is the test and development stand-in for the global cloud, and issues v1
tokens as the global cloud does. Any other host is unknown: no v1 issuer is trusted there (v1
tokens are refused, v2 tokens still work) rather than guessing which STS speaks for it.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from shared.settings import is_loopback_host

_GLOBAL_V1: Final = "https://sts.windows.net"
_CHINA_V1: Final = "https://sts.chinacloudapi.cn"
V1_STS_BY_AUTHORITY_HOST: Final[dict[str, str]] = {
    "login.microsoftonline.com": _GLOBAL_V1,
    "login.windows.net": _GLOBAL_V1,
    "login.microsoft.com": _GLOBAL_V1,
    "login.microsoftonline.us": _GLOBAL_V1,
    "login.usgovcloudapi.net": _GLOBAL_V1,
    "login.partner.microsoftonline.cn": _CHINA_V1,
    "login.chinacloudapi.cn": _CHINA_V1,
}


def v1_issuer(authority_host: str, tenant_id: str) -> str | None:
    """The `iss` of v1 tokens for `tenant_id` in the authority's cloud; None if unknown."""
    host = (urlsplit(authority_host).hostname or "").lower()
    sts = V1_STS_BY_AUTHORITY_HOST.get(host)
    if sts is None and is_loopback_host(host):
        sts = _GLOBAL_V1
    return None if sts is None else f"{sts}/{tenant_id}/"
