"""The ccmsetup.exe invocation, built from typed settings values, never from request input.

Quoting follows the rules Windows programs use to split a command line (CommandLineToArgvW and
the Microsoft C runtime): an argument with a space or tab, or an empty one, is wrapped in double
quotes, and backslashes are doubled only where they precede a double quote. Settings validation
already refuses quotes, control characters and cmd.exe metacharacters; `_checked` refuses them
again here so that no future setting can smuggle a switch or property into the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shared.errors import SettingError
from shared.profiles import Overrides
from shared.settings import Settings

CCMSETUP: Final = "ccmsetup.exe"
NO_CRL_CHECK: Final = "/NoCrlCheck"
SOURCE_PREFIX: Final = "/Source:"
# Characters that could end an argument, start a new one, or mean something to cmd.exe.
_FORBIDDEN: Final = re.compile(r'["\x00-\x1f\x7f%^&|<>!]')


@dataclass(frozen=True, slots=True)
class CcmsetupCommand:
    """Switches (`/NoCrlCheck`, `/Source:...`) and MSI-style properties, in ccmsetup's order."""

    switches: tuple[str, ...]
    properties: dict[str, str]

    @classmethod
    def from_settings(
        cls, settings: Settings, overrides: Overrides | None = None
    ) -> CcmsetupCommand:
        """The settings' values, with an install profile's `overrides` where it sets one (its
        extra properties go after SMSMP; the AAD* ones are always the tenant's)."""
        o = overrides or Overrides()
        no_crl_check = settings.no_crl_check if o.no_crl_check is None else o.no_crl_check
        source = o.source or settings.ccmsetup_source
        switches: list[str] = []
        if no_crl_check:
            switches.append(NO_CRL_CHECK)
        if source:
            switches.append(SOURCE_PREFIX + _checked("CCMSETUP_SOURCE", source))
        candidates = {
            "CCMHOSTNAME": ("CCM_HOSTNAME", o.ccm_hostname or settings.ccm_hostname),
            "SMSSiteCode": ("SMS_SITE_CODE", o.site_code or settings.site_code),
            "SMSMP": ("SMS_MP", o.management_point or settings.management_point),
            **{name: (f"profile property {name}", value) for name, value in o.properties},
            "AADTENANTID": ("AAD_TENANT_ID", settings.tenant_id),
            "AADTENANTNAME": ("AAD_TENANT_NAME", settings.tenant_name),
            "AADCLIENTAPPID": ("AAD_CLIENT_APP_ID", settings.client_app_id),
            "AADRESOURCEURI": ("AAD_RESOURCE_URI", settings.resource_uri),
        }
        properties = {
            name: _checked(setting, value)
            for name, (setting, value) in candidates.items()
            if value is not None
        }
        return cls(switches=tuple(switches), properties=properties)

    def arguments(self) -> list[str]:
        """argv after `ccmsetup.exe`: switches, then NAME=value properties."""
        return [*self.switches, *(f"{name}={value}" for name, value in self.properties.items())]

    def command_line(self) -> str:
        return " ".join(quote_windows_argument(arg) for arg in [CCMSETUP, *self.arguments()])

    def as_claim(self) -> dict[str, object]:
        """The bundle's `ccmsetup` claim."""
        return {
            "switches": list(self.switches),
            "properties": dict(self.properties),
            "commandLine": self.command_line(),
        }


def quote_windows_argument(argument: str) -> str:
    """One argument as CommandLineToArgvW reads it back unchanged."""
    if argument and not any(c in argument for c in ' \t\n\v"'):
        return argument
    quoted: list[str] = ['"']
    backslashes = 0
    for char in argument:
        if char == "\\":
            backslashes += 1
            continue
        if char == '"':
            quoted.append("\\" * (2 * backslashes + 1) + '"')
        else:
            quoted.append("\\" * backslashes + char)
        backslashes = 0
    # Backslashes before the closing quote must be doubled so they stay literal.
    quoted.append("\\" * (2 * backslashes) + '"')
    return "".join(quoted)


def _checked(setting: str, value: str) -> str:
    if not value or _FORBIDDEN.search(value):
        raise SettingError(
            setting, "a value without quotes, control characters or % ^ & | < > !", value=value
        )
    return value
