"""Signing and checking fleetconfig webhook deliveries (standard library only).

A receiver needs nothing else from fleetconfig: copy this module, or ``pip install fleetconfig``
and import it. Every delivery carries a header::

    Fleetconfig-Signature: t=1767225600,v1=5257a869e7ec...8bd

``t`` is when the delivery was signed (Unix seconds) and each ``v1`` is the lowercase hex
HMAC-SHA256, keyed with an endpoint secret, of ``f"{t}.".encode() + body`` (the raw request
body, byte for byte). During a secret rotation the header holds one ``v1`` per secret still
signing, so a receiver holding either the old or the new secret accepts it.

A receiver accepts a delivery when one ``v1`` matches its secret (compared in constant time)
and ``t`` is within its replay window of its own clock (:data:`DEFAULT_TOLERANCE_SECONDS`,
5 minutes): a captured request replayed later is refused. Every retry is signed afresh, so
retries are not refused as replays.

    from fleetconfig.webhook_signature import verify, InvalidSignature

    try:
        verify(body, request.headers["Fleetconfig-Signature"], secret)
    except InvalidSignature:
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

HEADER = "Fleetconfig-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The header is missing or malformed, no signature matches, or it is too old."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}." + body`` keyed with ``secret``."""
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Iterable[str], timestamp: int | None = None) -> str:
    """The header value for ``body``, signed now (or at ``timestamp``) by each secret."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={signed_at}"]
    parts += [f"{SCHEME}={signature(secret, signed_at, body)}" for secret in secrets]
    return ",".join(parts)


def parse(header: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` of a header value; unknown schemes are skipped."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("the signature's timestamp is not a number") from None
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp is None:
        raise InvalidSignature("the signature header has no timestamp")
    if not signatures:
        raise InvalidSignature(f"the signature header has no {SCHEME} signature")
    return timestamp, signatures


def verify(
    body: bytes,
    header: str | None,
    secret: str | Iterable[str],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a delivery; return its signing timestamp or raise :class:`InvalidSignature`.

    ``secret`` may be several (a receiver in the middle of a rotation): any one will do.
    """
    if not header:
        raise InvalidSignature(f"no {HEADER} header")
    timestamp, given = parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise InvalidSignature(
            f"the signature is {abs(current - timestamp):.0f} s away from now, "
            f"outside the {tolerance_seconds:.0f} s window"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for candidate in secrets:
        expected = signature(candidate, timestamp, body)
        if any(hmac.compare_digest(expected, value) for value in given):
            return timestamp
    raise InvalidSignature("no signature matches the secret")
