"""The development host's own error answers: RFC 9457 problem+json, nothing of the request in them.

The host answers some requests itself (no route, another method, a body over the limit, a request
aiohttp cannot parse). Each answer is `{"type": "about:blank", "title": <reason phrase>, "status",
"detail"}`: with `about:blank` the title is the status's reason phrase (RFC 9457 section 4.2.1).
The detail is a fixed sentence, never a value the caller sent: a hostile request must not be able
to put its own text (a token, a script) into an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Final

from aiohttp import web

PROBLEM_JSON: Final = "application/problem+json"


def problem(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, close: bool = False
) -> web.Response:
    """A problem+json answer; `close` drops the connection after it (its state is unknown)."""
    title = HTTPStatus(status).phrase
    response = web.json_response(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status=status,
        content_type=PROBLEM_JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )
    if close:
        response.force_close()
    return response
