"""The audited client address: the entry the platform appends to X-Forwarded-For, never one the
caller wrote (App Service appends the connection's `ip:port` after whatever the caller sent)."""

from __future__ import annotations

import pytest

from shared.bundles import client_ip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # What App Service forwards when the caller sent nothing.
        ("203.0.113.7:50123", "203.0.113.7"),
        ("203.0.113.7", "203.0.113.7"),
        ("[2001:db8::7]:50123", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        # A caller claiming to be someone else: the platform's entry wins.
        ("10.0.0.1, 203.0.113.7:50123", "203.0.113.7"),
        ("198.51.100.1, 192.0.2.2, 203.0.113.7:443", "203.0.113.7"),
        ("127.0.0.1,203.0.113.7:50123", "203.0.113.7"),
        ("not-an-address, [2001:db8::7]:1", "2001:db8::7"),
        # Two header lines, joined with a comma as HTTP allows: still the last.
        ("192.0.2.99:1, 10.9.8.7:2", "10.9.8.7"),
    ],
)
def test_the_platforms_entry_is_audited(header: str, expected: str) -> None:
    assert client_ip(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "203.0.113.7, garbage",  # the last entry is unreadable: no earlier entry is used instead
        "203.0.113.7, ",
        "203.0.113.7, 999.1.1.1:80",
        "203.0.113.7, [not-v6]:80",
    ],
)
def test_an_unreadable_last_entry_is_not_replaced_by_a_spoofed_one(header: str | None) -> None:
    assert client_ip(header) is None
