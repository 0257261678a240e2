"""Field rules shared by several resources, raising ``422 validation_failed`` with paths."""

from __future__ import annotations

import re

from fleetconfig.server.kit.errors import ValidationFailed

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


def check_length(path: str, value: str, *, minimum: int = 1, maximum: int = 48) -> None:
    if not minimum <= len(value) <= maximum:
        raise ValidationFailed(
            f"{path.strip('/')} must be {minimum} to {maximum} characters long",
            errors=[{"path": path, "message": f"must be {minimum} to {maximum} characters long"}],
        )


def check_slug(path: str, value: str) -> None:
    if not SLUG_PATTERN.match(value):
        message = (
            "must be 1 to 48 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
        raise ValidationFailed(f"{path.strip('/')} {message}", errors=[{"path": path, "message": message}])
