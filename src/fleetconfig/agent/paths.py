"""Which filepaths a deployment may write, and where they land on this machine.

A config instance's ``filepath`` comes from the server, so it is untrusted input: it must be
absolute, normalised, free of ``..``, control characters and NUL, unique within its
deployment, and strictly inside one of the agent's allowed roots (default ``/srv/miru``).
A path that breaks a rule can never become valid by retrying, so these errors are permanent.

``--root DIR`` maps every device path under ``DIR``: ``/srv/miru/x.json`` is written to
``DIR/srv/miru/x.json``, so tests, the demo and unprivileged users need no root access.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFAULT_ALLOWED_ROOTS: tuple[str, ...] = ("/srv/miru",)

# Temporary and backup files of a file transaction start with this; a config file may not,
# so recovery can never mistake one for the other.
RESERVED_PREFIX = ".fleetconfig-"

_MAX_COMPONENT_BYTES = 255
_MAX_PATH_BYTES = 4095


class FilepathError(ValueError):
    """A filepath the agent refuses to write; retrying cannot fix it."""

    def __init__(self, filepath: object, reason: str) -> None:
        super().__init__(f"filepath {filepath!r} refused: {reason}")
        self.filepath = filepath
        self.reason = reason


def _check_shape(path: str) -> None:
    """The rules every absolute, normalised path obeys (for filepaths and roots alike)."""
    if not path:
        raise FilepathError(path, "it is empty")
    if "\x00" in path:
        raise FilepathError(path, "it contains a NUL character")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise FilepathError(path, "it contains a control character")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise FilepathError(path, "it is not valid UTF-8") from None
    if not path.startswith("/"):
        raise FilepathError(path, "it is not absolute")
    if ".." in path.split("/"):
        raise FilepathError(path, "it contains '..'")
    # normpath keeps a leading "//" (POSIX allows it a special meaning); refuse it too.
    if posixpath.normpath(path) != path or path.startswith("//"):
        raise FilepathError(path, "it is not normalised")
    if len(encoded) > _MAX_PATH_BYTES:
        raise FilepathError(path, "it is too long")
    if any(len(part.encode("utf-8")) > _MAX_COMPONENT_BYTES for part in path.split("/")):
        raise FilepathError(path, "a component is longer than 255 bytes")


def normalise_roots(roots: Iterable[str]) -> tuple[str, ...]:
    """Check the configured allowed roots; each must itself be absolute and normalised."""
    checked: list[str] = []
    for root in roots:
        try:
            _check_shape(root)
        except FilepathError as error:
            raise ValueError(f"allowed root {root!r} is invalid: {error.reason}") from None
        if root == "/":
            raise ValueError("allowed root '/' would let a deployment overwrite any file")
        checked.append(root)
    if not checked:
        raise ValueError("at least one allowed root is required")
    return tuple(checked)


def containing_root(filepath: str, allowed_roots: Sequence[str]) -> str | None:
    for root in allowed_roots:
        if filepath.startswith(root + "/"):
            return root
    return None


def validate_filepath(filepath: object, allowed_roots: Sequence[str]) -> str:
    if not isinstance(filepath, str):
        raise FilepathError(filepath, "it is not a string")
    _check_shape(filepath)
    if containing_root(filepath, allowed_roots) is None:
        raise FilepathError(filepath, f"it is outside the allowed roots {list(allowed_roots)}")
    if posixpath.basename(filepath).startswith(RESERVED_PREFIX):
        raise FilepathError(filepath, f"file names starting {RESERVED_PREFIX!r} are reserved")
    return filepath


def validate_filepaths(filepaths: Sequence[object], allowed_roots: Sequence[str]) -> list[str]:
    """Validate one deployment's filepaths together; raise on the first one refused."""
    checked = [validate_filepath(path, allowed_roots) for path in filepaths]
    seen: set[str] = set()
    for path in checked:
        if path in seen:
            raise FilepathError(path, "it appears twice in the deployment")
        seen.add(path)
    # A path cannot be both a file and the directory of another file.
    for path in checked:
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if parent in seen:
                raise FilepathError(
                    path, f"its directory {parent!r} is also a file of the deployment"
                )
            parent = posixpath.dirname(parent)
    return checked


def to_host_path(device_path: str, root: Path) -> Path:
    """Where a device path lives on this machine, given the ``--root`` setting."""
    return Path(root, device_path.lstrip("/"))
