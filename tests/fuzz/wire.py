"""Raw HTTP/1.1 over a socket: a hostile client sends bytes no HTTP library would, and the checks
every answer must pass (no 5xx, problem+json on errors, nothing secret echoed, within a bound)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Final

ANSWER_WITHIN_SECONDS: Final = 5.0
PROBLEM_MEMBERS: Final = ("type", "title", "status", "detail")


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes
    seconds: float
    head: bytes = field(repr=False, default=b"")

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent (already percent-encoded where it should be)
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def wire(self, host: bytes) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1".encode("latin-1")]
        names = {name.lower() for name, _ in self.headers}
        if b"host" not in names:
            lines.append(b"Host: " + host)
        lines += [name + b": " + value for name, value in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(self.body))
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


def send(port: int, request: Request, *, timeout: float = 30.0) -> Answer:
    """One request on its own connection; the answer read by Content-Length, else to the close."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.wire(f"127.0.0.1:{port}".encode()))
        stream = sock.makefile("rb")
        head = stream.readline()
        headers = Message()
        raw = [head]
        while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
            raw.append(line)
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        length = headers.get("Content-Length")
        no_body = request.method == "HEAD" or head.split(b" ")[1:2] in ([b"204"], [b"304"])
        if no_body:
            body = b""
        elif length is not None:
            body = stream.read(int(length))
        else:
            body = stream.read()
    status = int(head.split(b" ")[1])
    return Answer(status, headers, body, time.monotonic() - started, b"".join(raw))


def assert_honest(request: Request, answer: Answer, *, secrets: tuple[str, ...]) -> None:
    """What every answer to a hostile request must be, whatever the request was."""
    shown = f"{request.method} {request.target[:200]} -> {answer.status} {answer.body[:300]!r}"
    assert answer.status < 500, shown
    assert answer.seconds < ANSWER_WITHIN_SECONDS, f"{answer.seconds:.1f}s: {shown}"
    for secret in secrets:
        assert secret.encode() not in answer.body, f"echoed a secret: {shown}"
        assert secret.encode() not in answer.head, f"echoed a secret in a header: {shown}"
    if answer.status >= 400 and request.method != "HEAD":
        content_type = answer.headers.get("Content-Type", "")
        assert content_type.startswith("application/problem+json"), shown
        problem = answer.json()
        assert isinstance(problem, dict), shown
        assert all(problem.get(member) for member in PROBLEM_MEMBERS), shown
        assert problem["status"] == answer.status, shown
