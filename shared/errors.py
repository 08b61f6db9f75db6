"""One exception hierarchy for the app.

`BootstrapError` is the root. `SettingError` is a bad app setting; `InvalidInput` and its
subclasses are input from outside that cannot be read (a report, a queue message, an event);
`ProblemError` and its subclasses are the HTTP answers of RFC 9457 (problem+json) that a handler
raises and `shared.http` turns into a response; `StorageUnavailable` is storage that did not
answer. Errors of one component's own operation (a lost lease, Graph refusing) are subclasses of
`BootstrapError` next to the code that raises them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

PROBLEM_TYPE_BASE = "https://github.com/configmgr-cloud-bootstrap/problems/"
PROBLEM_JSON = "application/problem+json"  # RFC 9457 section 3


class BootstrapError(Exception):
    """Root of every error this app raises on purpose."""


class SettingError(BootstrapError):
    """A required setting is missing or a setting is malformed. `str()` is one line."""

    def __init__(
        self, name: str, expected: str, *, value: str | None = None, missing: bool = False
    ) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        self.missing = missing
        super().__init__(str(self))

    def without_value(self) -> str:
        """The one line without the value, for answers: a malformed value may hold a secret."""
        state = "is required" if self.missing else "is missing or malformed"
        return f"{self.name} {state}: expected {self.expected}"

    def __str__(self) -> str:
        if self.missing:
            return f"{self.name} is required: expected {self.expected}"
        shown = self.value if self.value is not None and len(self.value) <= 200 else "<long value>"
        return f"{self.name} is malformed: expected {self.expected}, got {shown!r}"


class StorageUnavailable(BootstrapError):
    """Azure Storage did not answer or refused the request in a way worth retrying."""


class InvalidInput(BootstrapError):
    """Input from outside that cannot be read; `str()` says what is wrong, never the input."""


class InvalidReport(InvalidInput):
    """A device status report breaks the schema. `errors` maps each failing field to what is
    wrong (a JSON pointer, `/` for the whole body)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {d}" for f, d in errors.items()))


class MalformedContinuation(InvalidInput):
    """A `discovery-continue` message that is neither a run's `{"tenant", "mode", ...}` nor a
    `{"tenant", "job"}`."""


class MalformedEvent(InvalidInput):
    """An Event Grid event that cannot be read (never the whole payload in the message)."""


class ProblemError(BootstrapError):
    """An HTTP error answer: status, a short title, a human detail, and optional extras."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str,
        *,
        extensions: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def body(self) -> dict[str, object]:
        # Extensions never override the RFC 9457 members (health adds its own "status").
        return {
            **self.extensions,
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class BadRequest(ProblemError):
    status = 400
    title = "Bad Request"
    slug = "bad-request"

    def __init__(self, detail: str, *, errors: Mapping[str, str] | None = None) -> None:
        """`errors` maps each failing field (JSON pointer or parameter name) to what is wrong."""
        extensions = {"errors": [{"field": f, "detail": d} for f, d in (errors or {}).items()]}
        super().__init__(detail, extensions=extensions if errors else None)
        self.errors = dict(errors or {})


class Unauthorized(ProblemError):
    """401: no token, or a token that is not valid (RFC 6750 challenge in the header)."""

    status = 401
    title = "Unauthorized"
    slug = "invalid-token"

    def __init__(
        self, detail: str, *, token_present: bool = True, challenge: str | None = None
    ) -> None:
        if challenge is None:
            challenge = 'Bearer error="invalid_token"' if token_present else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InvalidDeviceProof(Unauthorized):
    """401: the `Device-Proof` header is missing where needed or does not prove the device."""

    slug = "invalid-proof"
    CHALLENGE: ClassVar[str] = 'Device-Proof error="invalid_proof"'

    def __init__(self, detail: str) -> None:
        super().__init__(detail, challenge=self.CHALLENGE)


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(ProblemError):
    status = 404
    title = "Not Found"
    slug = "not-found"


class PayloadTooLarge(ProblemError):
    status = 413
    title = "Payload Too Large"
    slug = "payload-too-large"


class UnsupportedContentEncoding(ProblemError):
    """415 for a body sent with a content coding (RFC 9110 section 15.5.16): bodies are plain."""

    status = 415
    title = "Unsupported Media Type"
    slug = "unsupported-content-encoding"

    def __init__(self) -> None:
        super().__init__(
            "The body must be sent without a Content-Encoding.",
            headers={"Accept-Encoding": "identity"},
        )


class ServiceUnavailable(ProblemError):
    status = 503
    title = "Service Unavailable"
    slug = "unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class ConfigurationProblem(ProblemError):
    """The app is misconfigured; the detail names the setting (setting names are not secret)."""

    status = 500
    title = "Configuration Error"
    slug = "configuration"
