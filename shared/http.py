"""HTTP helpers shared by every blueprint: problem+json answers and one error boundary."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import azure.functions as func

from shared.errors import (
    PROBLEM_JSON,
    ConfigurationProblem,
    ProblemError,
    ServiceUnavailable,
    SettingError,
    StorageUnavailable,
    UnsupportedContentEncoding,
)
from shared.times import format_utc

_log = logging.getLogger(__name__)

Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def _json_default(value: object) -> str:
    """One time format in every answer: RFC 3339 UTC with Z (Table storage hands datetimes)."""
    return format_utc(value) if isinstance(value, datetime) else str(value)


def json_response(
    body: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), default=_json_default),
        status_code=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_response(error: ProblemError) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(error.body(), separators=(",", ":")),
        status_code=error.status,
        mimetype=PROBLEM_JSON,
        headers={"Cache-Control": "no-store", **error.headers},
    )


def problem_boundary(handler: Handler) -> Handler:
    """Map the app's errors to problem+json; anything unexpected is logged, never echoed."""

    @functools.wraps(handler)
    async def wrapper(req: func.HttpRequest, *args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            return await handler(req, *args, **kwargs)
        except ProblemError as error:
            return problem_response(error)
        except SettingError as error:
            _log.error("setting error: %s", error)
            return problem_response(ConfigurationProblem(error.without_value()))
        except StorageUnavailable:
            _log.warning("storage unavailable", exc_info=True)
            return problem_response(ServiceUnavailable("Storage is not reachable; retry later."))
        except Exception:
            _log.exception("unhandled error in %s", handler.__name__)
            return problem_response(
                ProblemError("The request failed unexpectedly; the error was logged.")
            )

    return wrapper


def require_plain_body(req: func.HttpRequest) -> None:
    """415 unless the body has no content coding: the Functions host passes a compressed body
    through as sent, and a digest or a size limit is about the bytes the device sent."""
    coding = (req.headers.get("Content-Encoding") or "").strip().lower()
    if coding not in ("", "identity"):
        raise UnsupportedContentEncoding()
