"""The verification helper receivers use: valid, tampered, stale, rotated, malformed."""

from __future__ import annotations

import pytest

from fleetconfig.webhook_signature import InvalidSignature, sign, signature, verify

BODY = b'{"id":"evt_1","type":"device.modified"}'
NOW = 1_800_000_000


def test_a_signed_body_verifies() -> None:
    header = sign(BODY, ["whsec_a"], timestamp=NOW)
    assert header == f"t={NOW},v1={signature('whsec_a', NOW, BODY)}"
    assert verify(BODY, header, "whsec_a", now=NOW + 10) == NOW


def test_a_tampered_body_or_timestamp_or_secret_does_not() -> None:
    header = sign(BODY, ["whsec_a"], timestamp=NOW)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(BODY + b" ", header, "whsec_a", now=NOW)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(BODY, header.replace(f"t={NOW}", f"t={NOW + 1}"), "whsec_a", now=NOW)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(BODY, header, "whsec_b", now=NOW)


def test_a_stale_or_future_timestamp_is_refused() -> None:
    header = sign(BODY, ["whsec_a"], timestamp=NOW)
    assert verify(BODY, header, "whsec_a", now=NOW + 300) == NOW
    with pytest.raises(InvalidSignature, match="outside the 300 s window"):
        verify(BODY, header, "whsec_a", now=NOW + 301)
    with pytest.raises(InvalidSignature, match="window"):
        verify(BODY, header, "whsec_a", now=NOW - 301)
    assert verify(BODY, header, "whsec_a", now=NOW + 3000, tolerance_seconds=3600) == NOW


def test_during_a_rotation_either_secret_verifies() -> None:
    header = sign(BODY, ["whsec_new", "whsec_old"], timestamp=NOW)
    assert verify(BODY, header, "whsec_old", now=NOW) == NOW
    assert verify(BODY, header, "whsec_new", now=NOW) == NOW
    assert verify(BODY, header, ["whsec_other", "whsec_new"], now=NOW) == NOW


@pytest.mark.parametrize(
    "header", [None, "", "v1=abc", f"t={NOW}", "t=soon,v1=abc", f"t={NOW},v0=abc"]
)
def test_a_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify(BODY, header, "whsec_a", now=NOW)


def test_unknown_schemes_are_skipped() -> None:
    header = sign(BODY, ["whsec_a"], timestamp=NOW) + ",v2=future"
    assert verify(BODY, header, "whsec_a", now=NOW) == NOW
