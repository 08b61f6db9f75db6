"""One GUID rule for settings, bundle requests, reports and dsregcmd output."""

import pytest

from shared.ids import parse_guid


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
