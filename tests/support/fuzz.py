"""How many examples the property-based tests run: a few in `make test`, many on request.

`FUZZ_SCALE=N` multiplies every test's example count by N (default 1). At 1 the examples are
derandomized (the same every run, so `make test` cannot flake on a new random input); above 1
they are random, and a failure prints the smallest input that shows it (`@reproduce_failure`).

    FUZZ_SCALE=50 .venv/bin/python -m pytest -p no:cacheprovider tests/fuzz \\
        tests/reports/test_properties.py
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

import pytest
from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])
SCALE: Final = max(1, int(os.environ.get("FUZZ_SCALE") or "1"))


def fuzz_settings(examples: int) -> Callable[[F], F]:
    """`examples` x FUZZ_SCALE examples, no per-example deadline (the machine is shared)."""
    chosen = settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )

    def apply(test: F) -> F:
        # pytest-timeout's 120 s is for the default run; a longer run gets as much more time.
        return pytest.mark.timeout(120 * SCALE)(chosen(test))  # type: ignore[no-any-return]

    return apply
