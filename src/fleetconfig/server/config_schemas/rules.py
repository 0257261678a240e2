"""Pure rules of config schemas: language/format pairs, instance file paths, storable text and
the content digest. No I/O; every violation is a ``422 validation_failed`` with paths.

The digest identifies a schema by content, so that a CI job uploading the same schema again
(perhaps reformatted) gets the existing one back:

- JSON Schema documents (``json`` or ``yaml``) are parsed and re-serialised as canonical JSON:
  sorted keys, no whitespace, UTF-8, non-ASCII kept as is. Comments, key order, spacing and
  the choice of JSON or YAML do not change the digest.
- One CUE document: its bytes as given (UTF-8).
- Several CUE documents (one CUE package): the sha256 hex digest of each document's bytes,
  sorted, each followed by a newline; the digest is taken over that text. The order in which
  the files are sent and their names do not change it; any change to any file does.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from typing import Any

from fleetconfig.server.kit.errors import ValidationFailed
from fleetconfig.server.kit.validation import text_problem

JSONSCHEMA = "jsonschema"
CUE = "cue"
# Metadata only: every instance is valid (everglades).
OPAQUE = "opaque"
FORMATS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    JSONSCHEMA: ("json", "yaml"),
    CUE: ("cue",),
    OPAQUE: ("json", "yaml"),
}
INSTANCE_FORMATS = ("json", "yaml", "jsonc", "xml", "text")
# The instance formats a validating language can read as a JSON value.
VALIDATED_INSTANCE_FORMATS = ("json", "yaml", "jsonc")
DEFAULT_SLOT_KEY = "default"
_SLOT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_SLOT_KEY_LENGTH = 128
MAX_SLOTS = 100
DEFAULT_INSTANCE_DIRECTORY = "/srv/miru/configs"
# Kept well under PostgreSQL's btree entry limit: the path is part of a unique index.
MAX_FILEPATH_BYTES = 1024
MAX_FILENAME_BYTES = 255
MAX_DOCUMENT_NAME_LENGTH = 1024
MAX_DOCUMENTS = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def error(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message}


def fail(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{path.strip('/') or 'body'}: {message}", errors=[error(path, message)]
    )


def check_text(path: str, value: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise fail(path, problem)


def check_language_format(language: str, format: str) -> None:
    allowed = FORMATS_BY_LANGUAGE[language]
    if format not in allowed:
        raise fail("/format", f"a {language} schema must have format {' or '.join(allowed)}")


def check_document_count(language: str, count: int) -> None:
    if language in (JSONSCHEMA, OPAQUE) and count != 1:
        raise fail("/documents", f"a {language} schema has exactly one document")
    if count < 1:
        raise fail("/documents", "at least one document is required")
    if count > MAX_DOCUMENTS:
        raise fail("/documents", f"at most {MAX_DOCUMENTS} documents are allowed")


def check_document_name(path: str, name: str) -> None:
    if not name.strip():
        raise fail(path, "must not be empty")
    if len(name) > MAX_DOCUMENT_NAME_LENGTH:
        raise fail(path, f"must be at most {MAX_DOCUMENT_NAME_LENGTH} characters long")
    check_text(path, name)


def default_instance_filepath(slug: str, instance_format: str = "json") -> str:
    extension = "yaml" if instance_format == "yaml" else "json"
    return f"{DEFAULT_INSTANCE_DIRECTORY}/{slug}.{extension}"


def format_of_filepath(filepath: str) -> str:
    """The instance format a path's extension says (how tetons schemas get theirs)."""
    return "yaml" if filepath.lower().endswith((".yaml", ".yml")) else "json"


def default_slot(filepath: str) -> dict[str, object]:
    return {
        "key": DEFAULT_SLOT_KEY,
        "name": "Default",
        "filepath": filepath,
        "required": True,
        "description": None,
    }


def check_slots(slots: list[dict[str, object]]) -> list[dict[str, object]]:
    """The slots with their paths normalised; keys and paths unique within the schema."""
    if not slots:
        raise fail("/instance_slots", "at least one slot is required")
    if len(slots) > MAX_SLOTS:
        raise fail("/instance_slots", f"at most {MAX_SLOTS} slots are allowed")
    checked: list[dict[str, object]] = []
    keys: set[object] = set()
    paths: set[str] = set()
    for index, slot in enumerate(slots):
        where = f"/instance_slots/{index}"
        key = str(slot["key"])
        if len(key) > MAX_SLOT_KEY_LENGTH or not _SLOT_KEY.match(key):
            raise fail(
                f"{where}/key",
                "must be lowercase letters, digits, '_' and '-', start with a letter or digit, "
                f"and be at most {MAX_SLOT_KEY_LENGTH} characters long",
            )
        if key in keys:
            raise fail(f"{where}/key", f"slot key {key!r} is used twice")
        name = str(slot["name"])
        if not name.strip():
            raise fail(f"{where}/name", "must not be empty")
        check_text(f"{where}/name", name)
        filepath = normalize_instance_filepath(str(slot["filepath"]), f"{where}/filepath")
        if filepath in paths:
            raise fail(f"{where}/filepath", f"{filepath} is the path of another slot")
        description = slot.get("description")
        if isinstance(description, str):
            check_text(f"{where}/description", description)
        keys.add(key)
        paths.add(filepath)
        checked.append(
            {
                "key": key,
                "name": name,
                "filepath": filepath,
                "required": bool(slot["required"]),
                "description": description,
            }
        )
    return checked


def single_filepath(slots: list[dict[str, object]]) -> str:
    """The one path versions before everglades show: the ``default`` slot's, else the first
    required slot's, else the first slot's."""
    for slot in slots:
        if slot["key"] == DEFAULT_SLOT_KEY:
            return str(slot["filepath"])
    for slot in slots:
        if slot["required"]:
            return str(slot["filepath"])
    return str(slots[0]["filepath"])


def slots_key(instance_format: str, slots: list[dict[str, object]]) -> str:
    """Part of a schema's identity: the same content with other slots is another schema.
    (Migration 0004 holds a frozen copy: change both or neither.)"""
    canonical = json.dumps(
        {"instance_format": instance_format, "slots": slots},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalize_instance_filepath(value: str, path: str = "/instance_filepath") -> str:
    """An absolute POSIX path to a file, normalised (``//`` and ``.`` segments collapsed).

    ``..`` is refused rather than resolved: a path that climbs is a mistake or an attack, and
    the agent writes exactly where this says.
    """
    if not value:
        raise fail(path, "must not be empty")
    if "\x00" in value:
        raise fail(path, "must not contain NUL characters")
    check_text(path, value)
    if _CONTROL.search(value):
        raise fail(path, "must not contain control characters")
    if not value.startswith("/"):
        raise fail(path, "must be an absolute path (starting with '/')")
    segments = value.split("/")
    if ".." in segments:
        raise fail(path, "must not contain '..' segments")
    if value.endswith("/") or segments[-1] == ".":
        raise fail(path, "must name a file, not a directory")
    normalized = posixpath.normpath(value)
    # POSIX keeps a leading '//' as implementation-defined; we do not.
    normalized = "/" + normalized.lstrip("/")
    if normalized == "/":
        raise fail(path, "must name a file, not the root directory")
    if len(normalized.encode("utf-8")) > MAX_FILEPATH_BYTES:
        raise fail(path, f"must be at most {MAX_FILEPATH_BYTES} bytes long")
    for segment in normalized.split("/")[1:]:
        if len(segment.encode("utf-8")) > MAX_FILENAME_BYTES:
            raise fail(path, f"each path segment must be at most {MAX_FILENAME_BYTES} bytes long")
    return normalized


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal JSON values give equal bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_schema_digest(schema: Any) -> str:
    return "sha256:" + _sha256(canonical_json(schema))


def cue_digest(documents: list[str]) -> str:
    if len(documents) == 1:
        return "sha256:" + _sha256(documents[0].encode("utf-8"))
    listing = "".join(sorted(_sha256(data.encode("utf-8")) + "\n" for data in documents))
    return "sha256:" + _sha256(listing.encode("ascii"))
