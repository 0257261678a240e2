"""Field rules shared by several resources, raising ``422 validation_failed`` with paths."""

from __future__ import annotations

import re
from typing import Any

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
        raise ValidationFailed(
            f"{path.strip('/')} {message}", errors=[{"path": path, "message": message}]
        )


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text on both databases, or None.

    PostgreSQL refuses NUL in text, and a lone surrogate (which JSON's ``\\ud800`` escape can
    produce) cannot be encoded as UTF-8 by either driver.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    if _SURROGATE.search(value):
        return "must not contain unpaired UTF-16 surrogates"
    return None


def find_unstorable_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """The JSON pointer and problem of the first string (or key) that cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}/{key}"
            problem = text_problem(key)
            if problem:
                return item_path, f"key {problem}"
            found = find_unstorable_text(item, item_path)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable_text(item, f"{path}/{index}")
            if found:
                return found
    return None


def check_storable_body(body: Any) -> None:
    """Refuse a body holding text that neither database can store (422 with its path)."""
    found = find_unstorable_text(body)
    if found:
        path, problem = found
        raise ValidationFailed(
            f"{path.strip('/') or 'body'} {problem}", errors=[{"path": path, "message": problem}]
        )
