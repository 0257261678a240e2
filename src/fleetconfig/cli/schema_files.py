"""Finding and reading the annotated JSON Schema files of ``release create``: files in, facts out.

A schema file says which config type it is for, at its top level::

    x-miru-config-type: motion-control          # the type's slug (required)
    x-miru-config-type-name: Motion Control     # the name, if the type must be created
    x-miru-instance-filepath: /srv/miru/configs/motion.json   # where robots get the file

or, for a schema whose instances go to several places on the robot (everglades' instance
slots: one instance per slot in a deployment, all validated by this schema)::

    x-miru-instance-slots:
      - key: left                                 # [a-z0-9][a-z0-9_-]*, unique in the file
        name: Left arm
        filepath: /srv/miru/configs/arm-left.json
        required: true                            # optional, default true
        description: The left arm's limits        # optional
      - {key: right, name: Right arm, filepath: /srv/miru/configs/arm-right.json}

``x-miru-instance-filepath`` is the one-slot form (slot ``default``, as the server makes it);
with neither, the server's default path ``/srv/miru/configs/<slug>.json`` (``.yaml`` for a
YAML schema file). Files are ``.json``, ``.yaml`` or ``.yml`` (one YAML document). The
annotation keywords are unknown to JSON Schema and so ignored by validators: the file is
uploaded as it is, byte for byte. Every problem found is reported at once, so one run shows
everything to fix.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from fleetconfig.cli.client import CliError

if TYPE_CHECKING:
    from miru_platform_sdk.types import InstanceSlotParam

CONFIG_TYPE_KEY = "x-miru-config-type"
CONFIG_TYPE_NAME_KEY = "x-miru-config-type-name"
INSTANCE_FILEPATH_KEY = "x-miru-instance-filepath"
INSTANCE_SLOTS_KEY = "x-miru-instance-slots"
SLOT_FIELDS = {"key", "name", "filepath", "required", "description"}
SLOT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_SLOT_KEY_LENGTH = 128
DEFAULT_SLOT_KEY = "default"
FORMATS: dict[str, Literal["json", "yaml"]] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
# The server's rules for a config type (spec: 1-48 characters, [a-z0-9-], alphanumeric ends).
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
MAX_NAME_LENGTH = 48
DEFAULT_INSTANCE_DIRECTORY = "/srv/miru/configs"


class SchemaFileError(CliError):
    """One or more schema files cannot be used; ``details`` lists every problem."""


@dataclass(frozen=True)
class SchemaFile:
    path: Path
    relative_path: str  # POSIX, relative to the repository root
    format: Literal["json", "yaml"]
    text: str  # the bytes uploaded, decoded as UTF-8
    config_type_slug: str
    config_type_name: str
    instance_filepath: str | None  # None: the server's default for the type
    # The slots of x-miru-instance-slots (or the one slot of x-miru-instance-filepath), as
    # the API's InstanceSlot objects; None: the server's default slot.
    instance_slots: tuple[InstanceSlotParam, ...] | None = None

    @property
    def effective_instance_filepath(self) -> str:
        """The first slot's path: the only one, unless the file declares several slots."""
        return self.effective_instance_filepaths[0]

    @property
    def effective_instance_filepaths(self) -> list[str]:
        """Where the robots get this schema's files (the server's default when unannotated)."""
        if self.instance_slots:
            return [str(slot["filepath"]) for slot in self.instance_slots]
        extension = "yaml" if self.format == "yaml" else "json"
        return [f"{DEFAULT_INSTANCE_DIRECTORY}/{self.config_type_slug}.{extension}"]


def name_from_slug(slug: str) -> str:
    """``motion-control`` -> ``Motion Control``."""
    return " ".join(word.capitalize() for word in slug.split("-") if word)[:MAX_NAME_LENGTH]


def collect(directories: list[Path], files: list[Path]) -> list[Path]:
    """Every schema file named or found (recursively) in the directories, each once, sorted."""
    problems: list[str] = []
    found: dict[Path, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            problems.append(f"{directory}: not a directory")
            continue
        matches = [
            path
            for path in directory.rglob("*")
            if path.is_file() and path.suffix.lower() in FORMATS and not _hidden(path, directory)
        ]
        if not matches:
            problems.append(f"{directory}: no .json, .yaml or .yml files")
        for path in matches:
            found.setdefault(path.resolve(), path)
    for path in files:
        if not path.is_file():
            problems.append(f"{path}: no such file")
        elif path.suffix.lower() not in FORMATS:
            problems.append(f"{path}: not a .json, .yaml or .yml file")
        else:
            found.setdefault(path.resolve(), path)
    if problems:
        raise SchemaFileError("Cannot find the schema files", details=problems)
    if not found:
        raise SchemaFileError(
            "No schema files given", details=["Use --schemas DIR or --schema FILE."]
        )
    return [found[key] for key in sorted(found)]


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def parse_document(text: str, file_format: str) -> Any:
    """The document as data; ValueError says why it cannot be read."""
    if file_format == "json":
        return json.loads(text)
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on how fleetconfig was installed
        raise CliError(
            "Reading YAML schemas needs PyYAML",
            details=["Install it with: pip install 'fleetconfig[cli]'"],
        ) from None

    documents = [document for document in yaml.safe_load_all(text)]
    if len(documents) != 1:
        raise ValueError(
            f"a YAML schema holds exactly one document, this one holds {len(documents)}"
        )
    return documents[0]


def check_instance_filepath(value: str) -> str | None:
    """Why an ``x-miru-instance-filepath`` is unusable, or None (the server has the last word)."""
    if not value.startswith("/"):
        return "must be an absolute path (starting with /)"
    if "\x00" in value:
        return "must not contain NUL"
    if ".." in value.split("/"):
        return "must not contain a '..' segment"
    if value.endswith("/"):
        return "must name a file, not a directory"
    return None


def read_slots(value: Any, problems: list[str]) -> tuple[InstanceSlotParam, ...] | None:
    """The ``x-miru-instance-slots`` list as InstanceSlot objects; problems are appended."""
    if not isinstance(value, list) or not value:
        problems.append(f"{INSTANCE_SLOTS_KEY} must be a non-empty list of slots (got {value!r})")
        return None
    slots: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"{INSTANCE_SLOTS_KEY}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object with key, name and filepath")
            continue
        unknown = sorted(set(item) - SLOT_FIELDS)
        if unknown:
            problems.append(f"{where} has unknown fields: {', '.join(map(str, unknown))}")
        key, name, filepath = item.get("key"), item.get("name"), item.get("filepath")
        if not isinstance(key, str) or not SLOT_KEY.match(key) or len(key) > MAX_SLOT_KEY_LENGTH:
            problems.append(
                f"{where}.key must be 1-{MAX_SLOT_KEY_LENGTH} characters of a-z, 0-9, '_' and "
                f"'-', starting with a letter or digit (got {key!r})"
            )
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}.name must be a non-empty text (got {name!r})")
        problem = (
            check_instance_filepath(filepath)
            if isinstance(filepath, str)
            else f"must be a text (got {filepath!r})"
        )
        if problem:
            problems.append(f"{where}.filepath {problem}")
        required = item.get("required", True)
        if not isinstance(required, bool):
            problems.append(f"{where}.required must be true or false (got {required!r})")
        description = item.get("description")
        if description is not None and not isinstance(description, str):
            problems.append(f"{where}.description must be a text (got {description!r})")
        slot: dict[str, Any] = {
            "key": key,
            "name": name,
            "filepath": posixpath.normpath(filepath) if isinstance(filepath, str) else filepath,
            "required": required,
        }
        if description is not None:
            slot["description"] = description
        slots.append(slot)
    for field_name in ("key", "filepath"):
        values = [slot[field_name] for slot in slots]
        repeated = sorted({str(item) for item in values if values.count(item) > 1})
        if repeated:
            problems.append(f"{INSTANCE_SLOTS_KEY}: {field_name} used twice: {', '.join(repeated)}")
    # Well-typed InstanceSlot objects once no problem was found (with any, the file is refused).
    return cast("tuple[InstanceSlotParam, ...]", tuple(slots))


def read_schema_file(path: Path, root: Path) -> SchemaFile:
    """Read one file and its annotations; SchemaFileError lists what is wrong with it."""
    relative = path.resolve().relative_to(root).as_posix()
    file_format = FORMATS[path.suffix.lower()]
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaFileError(f"{relative}: not UTF-8 text") from None
    try:
        document = parse_document(text, file_format)
    except CliError:
        raise
    except Exception as error:  # json and yaml raise different types; both mean "unreadable"
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise SchemaFileError(
            f"{relative}: cannot be parsed as {file_format.upper()}: {first_line}"
        ) from None
    if not isinstance(document, dict):
        raise SchemaFileError(f"{relative}: a JSON Schema must be an object at the top level")

    problems: list[str] = []
    slug = document.get(CONFIG_TYPE_KEY)
    if slug is None:
        raise SchemaFileError(
            f"{relative}: not annotated with {CONFIG_TYPE_KEY}",
            details=[
                "Add the config type's slug at the top level, "
                f'e.g. "{CONFIG_TYPE_KEY}": "motion-control".'
            ],
        )
    if not isinstance(slug, str) or not SLUG.match(slug):
        problems.append(
            f"{CONFIG_TYPE_KEY} must be a slug: 1-48 characters of a-z, 0-9 and '-', "
            f"starting and ending with a letter or digit (got {slug!r})"
        )
        slug = ""
    name = document.get(CONFIG_TYPE_NAME_KEY)
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH
    ):
        problems.append(
            f"{CONFIG_TYPE_NAME_KEY} must be a text of 1-{MAX_NAME_LENGTH} characters "
            f"(got {name!r})"
        )
    filepath = document.get(INSTANCE_FILEPATH_KEY)
    if filepath is not None:
        problem = (
            check_instance_filepath(filepath)
            if isinstance(filepath, str)
            else f"must be a text (got {filepath!r})"
        )
        if problem:
            problems.append(f"{INSTANCE_FILEPATH_KEY} {problem}")
        else:
            filepath = posixpath.normpath(filepath)
    slots: tuple[InstanceSlotParam, ...] | None = None
    if INSTANCE_SLOTS_KEY in document:
        if filepath is not None:
            problems.append(
                f"give {INSTANCE_FILEPATH_KEY} or {INSTANCE_SLOTS_KEY}, not both "
                f"(one file path is the one-slot form of {INSTANCE_SLOTS_KEY})"
            )
        slots = read_slots(document[INSTANCE_SLOTS_KEY], problems)
    elif filepath is not None:
        # The one slot the server makes of an instance_filepath (tetons), so that a schema
        # registered by either form is found again by the other.
        slots = (
            {"key": DEFAULT_SLOT_KEY, "name": "Default", "filepath": filepath, "required": True},
        )
    if problems:
        raise SchemaFileError(f"{relative}: invalid annotations", details=problems)
    return SchemaFile(
        path=path,
        relative_path=relative,
        format=file_format,
        text=text,
        config_type_slug=slug,
        config_type_name=name.strip() if isinstance(name, str) else name_from_slug(slug),
        instance_filepath=filepath,
        instance_slots=slots,
    )


def read_schema_files(paths: list[Path], root: Path) -> list[SchemaFile]:
    """Read every file; refuse unannotated or invalid ones and a type or file path claimed twice."""
    schemas: list[SchemaFile] = []
    problems: list[str] = []
    for path in paths:
        try:
            schemas.append(read_schema_file(path, root))
        except SchemaFileError as error:
            problems.append(error.message)
            problems.extend(f"  {line}" for line in error.details)
    if problems:
        raise SchemaFileError("Some schema files cannot be used", details=problems)

    # A release holds at most one schema per config type and per instance file.
    by_type: dict[str, list[str]] = {}
    by_filepath: dict[str, list[str]] = {}
    for schema in schemas:
        by_type.setdefault(schema.config_type_slug, []).append(schema.relative_path)
        for filepath in schema.effective_instance_filepaths:
            by_filepath.setdefault(filepath, []).append(schema.relative_path)
    for slug, owners in by_type.items():
        if len(owners) > 1:
            problems.append(f"config type {slug!r} has {len(owners)} schemas: {', '.join(owners)}")
    for filepath, owners in by_filepath.items():
        if len(owners) > 1:
            problems.append(
                f"instance file {filepath} is written by {len(owners)} schemas: {', '.join(owners)}"
            )
    if problems:
        raise SchemaFileError(
            "A release takes one schema per config type and per instance file", details=problems
        )
    return schemas
