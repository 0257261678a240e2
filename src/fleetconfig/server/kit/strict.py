"""The strict parsing layer: request bodies, JSON numbers, timestamps, integer parameters.

Every request body model derives from :class:`RequestModel`, so a JSON value of the wrong
type is refused (``"yes"`` is not a boolean, ``"5"`` is not an integer) rather than coerced.
References to another object derive from :class:`Reference`, which refuses an empty one
(``{}``). Timestamps are :data:`Timestamp`, which reads RFC 3339 text and refuses one that
cannot be expressed in UTC. Numbers in JSON text are bounded while it is decoded
(:func:`bounded_int`, :func:`finite_float`), so no later step meets a value it cannot handle.

Per-version request models can derive from these classes like the rest: the layer is the
base classes and types, not a registry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    model_validator,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The longest decimal text of a 64-bit integer, with its sign; longer text is refused before
# ``int()`` is asked to convert it (Python refuses more than 4,300 digits with a ValueError).
_INT64_DIGITS = len(str(INT64_MIN))


class NumberOutOfRange(ValueError):
    """A number in JSON text that the API cannot hold."""


def bounded_int(text: str, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int:
    """``int(text)`` if it lies within ``minimum..maximum`` (64 bits by default)."""
    if len(text) > _INT64_DIGITS + 1:
        raise NumberOutOfRange(f"the number {text[:20]}... is out of range")
    value = int(text)
    if not minimum <= value <= maximum:
        raise NumberOutOfRange(f"the number {text} is out of range ({minimum} to {maximum})")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NumberOutOfRange(f"the number {text[:40]} is too large")
    return value


def refuse_constant(name: str) -> Any:
    raise NumberOutOfRange(f"{name} is not a JSON number")


class RequestModel(BaseModel):
    """A request body: JSON types are taken as they are, never coerced.

    Unknown fields are ignored, as newer clients may send fields this server does not know.
    """

    model_config = ConfigDict(strict=True, extra="ignore")


class Reference(RequestModel):
    """A reference to another object by one of several keys; at least one must be given."""

    @model_validator(mode="after")
    def _not_empty(self) -> Reference:
        if all(getattr(self, name) is None for name in type(self).model_fields):
            keys = " or ".join(type(self).model_fields)
            raise ValueError(f"give the {keys} of the object referred to")
        return self


_LAX_DATETIME = TypeAdapter(datetime)


def _parse_timestamp(value: Any) -> Any:
    # Only text: a bare number is ambiguous (seconds? milliseconds?) and JSON has no dates.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    try:
        return _LAX_DATETIME.validate_python(value)
    except ValidationError:
        raise ValueError("must be an RFC 3339 timestamp such as 2026-03-09T12:00:00Z") from None


def _in_utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC; an offset that moves it past year 1 or 9999 is
    refused (``astimezone`` would raise OverflowError, which no validator turns into a 4xx)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[datetime, BeforeValidator(_parse_timestamp), AfterValidator(_in_utc)]
