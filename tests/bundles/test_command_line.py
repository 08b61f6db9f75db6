"""The ccmsetup command line: built from typed settings, split back by Windows' rules."""

from __future__ import annotations

import dataclasses
import random

import pytest

from shared.bundles import CcmsetupCommand, quote_windows_argument
from shared.errors import SettingError
from shared.settings import Settings
from tests.bundles.windows_argv import split_windows_command_line
from tests.support.settings import (
    CCM_HOSTNAME,
    CLIENT_APP_ID,
    RESOURCE_URI,
    SITE_CODE,
    TENANT_ID,
    TENANT_NAME,
    product_env,
)


def settings_with(**overrides: str) -> Settings:
    return Settings.from_env(product_env("UseDevelopmentStorage=true", **overrides))


def test_full_command_line_round_trips_to_the_typed_values():
    settings = settings_with(
        CCMSETUP_NO_CRL_CHECK="true",
        CCMSETUP_SOURCE="C:\\CM Client Files\\",
        SMS_MP="https://mp.contoso.com",
    )
    command = CcmsetupCommand.from_settings(settings)

    argv = split_windows_command_line(command.command_line())

    assert argv == [
        "ccmsetup.exe",
        "/NoCrlCheck",
        "/Source:C:\\CM Client Files\\",
        f"CCMHOSTNAME={CCM_HOSTNAME}",
        f"SMSSiteCode={SITE_CODE}",
        "SMSMP=https://mp.contoso.com",
        f"AADTENANTID={TENANT_ID}",
        f"AADTENANTNAME={TENANT_NAME}",
        f"AADCLIENTAPPID={CLIENT_APP_ID}",
        f"AADRESOURCEURI={RESOURCE_URI}",
    ]
    assert argv[1:] == command.arguments()


def test_unset_optional_values_are_left_out():
    command = CcmsetupCommand.from_settings(settings_with())

    assert command.switches == ()
    assert "SMSMP" not in command.properties
    assert command.command_line().startswith(f"ccmsetup.exe CCMHOSTNAME={CCM_HOSTNAME} ")


@pytest.mark.parametrize(
    "argument",
    ["", "plain", "two words", "C:\\dir\\", "C:\\a b\\", 'say "hi"', 'tail\\"', "\\\\srv\\s x\\\\"],
)
def test_quoting_round_trips_awkward_arguments(argument: str):
    assert split_windows_command_line(quote_windows_argument(argument)) == [argument]


def test_quoting_round_trips_random_arguments():
    rng = random.Random(20261127)
    alphabet = 'ab \\"\t=/:'
    for _ in range(2000):
        args = ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(3)]
        line = " ".join(quote_windows_argument(a) for a in args)
        assert split_windows_command_line(line) == args, line


@pytest.mark.parametrize("value", ['C:\\x" /Source:D:\\evil', "C:\\a\nb", "C:\\100%"])
def test_values_that_could_break_the_line_are_refused_again_here(value: str):
    settings = settings_with()
    # Settings.from_env refuses these too; build the object directly to test the second guard.
    forged = dataclasses.replace(settings, ccmsetup_source=value)
    with pytest.raises(SettingError, match="CCMSETUP_SOURCE"):
        CcmsetupCommand.from_settings(forged)
