"""Identifiers: one GUID rule for every input, one inverted-time rule for every RowKey."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.ids import inverted_ticks, parse_guid


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("72F988BF-86F1-41AF-91AB-2D7CD011DB47", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("72f988bf-86f1-41af-91ab-2d7cd011db47", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("{72f988bf-86f1-41af-91ab-2d7cd011db47}", None),  # braces: only dsregcmd strips them
        ("urn:uuid:72f988bf-86f1-41af-91ab-2d7cd011db47", None),
        ("72f988bf86f141af91ab2d7cd011db47", None),
        ("72f988bf-86f1-41af-91ab2d7c-d011db47", None),  # 36 characters, hyphens misplaced
        ("72f988bf-86f1-41af-91ab-2d7cd011db4g", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_only_the_8_4_4_4_12_form_is_a_guid(value: object, expected: str | None) -> None:
    assert parse_guid(value) == expected


def test_inverted_ticks_sort_newer_moments_first_at_fixed_width():
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # .NET: DateTime.MaxValue.Ticks - new DateTime(1970, 1, 1).Ticks
    assert inverted_ticks(epoch) == "2534023007999999999"
    moments = [epoch + timedelta(microseconds=n) for n in (0, 1, 10**6, 10**12)]
    keys = [inverted_ticks(moment) for moment in moments]
    assert sorted(keys) == list(reversed(keys))
    assert {len(key) for key in keys} == {19}
