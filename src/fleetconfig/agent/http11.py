"""A small, strict HTTP/1.1 server-side codec for asyncio streams.

Enough for the on-device API: request line, headers, a body by ``Content-Length`` or
chunked coding, persistent connections, and responses with a known length or a stream
delimited by closing the connection (server-sent events). Anything ambiguous (a header
with space before the colon, folded lines, conflicting lengths) is refused, so a proxy in
front can never read a request differently from us.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

MAX_LINE = 8 * 1024
MAX_HEADERS = 100
MAX_BODY = 64 * 1024

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REQUEST_TARGET = re.compile(r"^/[\x21-\x7e]*$")


class HttpError(Exception):
    """The request cannot be served; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""
    path: str = field(init=False)
    segments: list[str] = field(init=False)
    query: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        raw_path, _, raw_query = self.target.partition("?")
        self.path = raw_path
        # Split before decoding, so an id holding "%2F" stays one segment.
        self.segments = [unquote(part) for part in raw_path.split("/")[1:]]
        self.query = parse_qs(raw_query, keep_blank_values=True)

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "a request line or header is too long") from None
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise HttpError(400, "the request ended early") from None
        raise
    if len(line) > MAX_LINE:
        raise HttpError(431, "a request line or header is too long")
    return line.rstrip(b"\n").removesuffix(b"\r")


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request; ``None`` when the client closed the connection between requests."""
    try:
        line = await _read_line(reader)
        # Robustness (RFC 9112 2.2): ignore an empty line before a request line.
        if not line:
            line = await _read_line(reader)
    except asyncio.IncompleteReadError:
        return None
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "malformed request line") from None
    if not _TOKEN.match(method):
        raise HttpError(400, "malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1 is supported")
    if not _REQUEST_TARGET.match(target):
        raise HttpError(400, "malformed request target")
    headers = await _read_headers(reader)
    body = await _read_body(reader, headers)
    return Request(method, target, version, headers, body)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        try:
            line = await _read_line(reader)
        except asyncio.IncompleteReadError:
            raise HttpError(400, "the request ended early") from None
        if not line:
            return headers
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "folded header lines are not allowed")
        try:
            text = line.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise HttpError(400, "malformed header") from None
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, "malformed header")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key in ("content-length", "host") and headers[key] != value:
                raise HttpError(400, f"conflicting {name} headers")
            headers[key] = f"{headers[key]}, {value}" if key != "content-length" else value
        else:
            headers[key] = value
    raise HttpError(431, "too many headers")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    try:
        if coding is not None:
            if length is not None:
                raise HttpError(400, "both Content-Length and Transfer-Encoding")
            if coding.lower() != "chunked":
                raise HttpError(400, "only the chunked transfer coding is supported")
            return await _read_chunked(reader)
        if length is None:
            return b""
        if not length.isdigit():
            raise HttpError(400, "malformed Content-Length")
        size = int(length)
        if size > MAX_BODY:
            raise HttpError(413, "the request body is too large")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise HttpError(400, "the request body ended early") from None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await _read_line(reader)).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpError(400, "malformed chunk size") from None
        if size < 0 or len(body) + size > MAX_BODY:
            raise HttpError(413, "the request body is too large")
        if size == 0:
            # Trailer fields end with an empty line; they are read and ignored.
            while await _read_line(reader):
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "malformed chunk")


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(
    status: int,
    payload: Any,
    *,
    keep_alive: bool = True,
    extra_headers: list[tuple[str, str]] | None = None,
) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "keep-alive" if keep_alive else "close"),
        *(extra_headers or []),
    ]
    return response_head(status, headers) + body
