"""The config difference between two deployments: a unified diff per file path.

Config files are often a single line of JSON, whose line diff says nothing; so content that
parses as JSON is compared pretty-printed (two-space indent, key order kept), and anything
else as the exact text. Pure functions: the page loads the contents and renders the result.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

LineKind = Literal["file", "hunk", "add", "remove", "context"]
FileChange = Literal["added", "removed", "changed", "unchanged"]
CONTEXT_LINES = 3


@dataclass(frozen=True)
class DiffLine:
    kind: LineKind
    text: str


@dataclass(frozen=True)
class FileDiff:
    path: str
    change: FileChange
    lines: list[DiffLine] = field(default_factory=list)
    reformatted: bool = False

    @property
    def added(self) -> int:
        return sum(1 for line in self.lines if line.kind == "add")

    @property
    def removed(self) -> int:
        return sum(1 for line in self.lines if line.kind == "remove")


def comparable_text(content: str) -> tuple[str, bool]:
    """The text to compare, and whether it was reformatted (JSON, pretty-printed)."""
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):
        return content, False
    pretty = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    return pretty, pretty != content


def _kind(line: str) -> LineKind:
    if line.startswith(("---", "+++")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "remove"
    return "context"


def diff_file(
    path: str, old: str | None, new: str | None, *, old_label: str, new_label: str
) -> FileDiff:
    """One file's diff; ``None`` means the file is not part of that deployment."""
    if old is None and new is None:
        raise ValueError("a file must be in at least one of the deployments")
    old_text, old_reformatted = comparable_text(old) if old is not None else ("", False)
    new_text, new_reformatted = comparable_text(new) if new is not None else ("", False)
    if old is None:
        change: FileChange = "added"
    elif new is None:
        change = "removed"
    elif old == new:
        return FileDiff(path, "unchanged")
    else:
        change = "changed"
    lines = [
        DiffLine(_kind(line), line)
        for line in difflib.unified_diff(
            old_text.splitlines(),
            new_text.splitlines(),
            fromfile=f"{path} ({old_label})" if old is not None else "/dev/null",
            tofile=f"{path} ({new_label})" if new is not None else "/dev/null",
            lineterm="",
            n=CONTEXT_LINES,
        )
    ]
    if change == "changed" and not lines:
        # Equal once pretty-printed: only whitespace or number formatting differs.
        lines = [DiffLine("context", "(the same JSON value; only formatting differs)")]
    return FileDiff(path, change, lines, reformatted=old_reformatted or new_reformatted)


def diff_deployments(
    old: Mapping[str, str], new: Mapping[str, str], *, old_label: str, new_label: str
) -> list[FileDiff]:
    """Per file path (sorted): how ``new``'s content differs from ``old``'s."""
    return [
        diff_file(path, old.get(path), new.get(path), old_label=old_label, new_label=new_label)
        for path in sorted(set(old) | set(new))
    ]
