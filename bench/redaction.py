"""Cost of the log redaction filter per record, next to the cost of logging the record at all.

    .venv/bin/python -m bench.redaction

Ceiling: one StreamHandler.emit of the same record (format + write), measured in the same run.
"""

from __future__ import annotations

import io
import logging
import timeit

from shared.telemetry import RedactSecrets

ROUNDS = 20_000
SAMPLE_JWS = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJhdWQiOiJhcGk6Ly9jb250b3NvIn0.c2lnbmF0dXJl"


def _record(message: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("shared.bench", logging.INFO, __file__, 1, message, args, None)
    record.runId = "run-20261127T150000Z"
    record.deviceId = "f8d44168-2b6d-49af-b09f-d1f9421cea54"
    return record


def _per_record_us(action: object) -> float:
    assert callable(action)
    return timeit.timeit(action, number=ROUNDS) / ROUNDS * 1e6


def main() -> None:
    redaction = RedactSecrets()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    ordinary = ("discovery progress pages=%d users=%d rate=%.0f/s", 12, 11988, 812.0)
    secret = ("upstream rejected Authorization: Bearer %s", SAMPLE_JWS)
    create = _per_record_us(lambda: _record(*ordinary))
    plain = _per_record_us(lambda: redaction.filter(_record(*ordinary))) - create
    holding = _per_record_us(lambda: redaction.filter(_record(*secret))) - create
    emit = _per_record_us(lambda: handler.emit(_record(*ordinary))) - create
    print(f"redaction, ordinary record:      {plain:6.1f} us/record ({1e6 / plain:,.0f}/s)")
    print(f"redaction, record with a token:  {holding:6.1f} us/record ({1e6 / holding:,.0f}/s)")
    print(f"ceiling, StreamHandler.emit:     {emit:6.1f} us/record ({1e6 / emit:,.0f}/s)")


if __name__ == "__main__":
    main()
