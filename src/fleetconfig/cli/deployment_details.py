"""What the server's ``fleetconfig`` extension of a deployment says, for people: why it is
retrying or failed (message, failing path, attempts, next retry) and which of its files
were modified on the robot. The official client keeps the extension as an extra field."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from fleetconfig.cli import output


def extension(deployment: Any) -> dict[str, Any]:
    extra = getattr(deployment, "model_extra", None) or {}
    value = extra.get("fleetconfig")
    return value if isinstance(value, dict) else {}


def error(deployment: Any) -> dict[str, Any] | None:
    value = extension(deployment).get("error")
    return value if isinstance(value, dict) else None


def file_changes(deployment: Any) -> list[dict[str, Any]]:
    value = extension(deployment).get("file_changes")
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def reason(deployment: Any) -> str:
    """One line: why it fails, else which files were modified on the robot, else ''."""
    found = error(deployment)
    if found is not None:
        parts = [str(found.get("message") or "no reason given")]
        if found.get("path") and str(found["path"]) not in parts[0]:
            parts.append(f"path {found['path']}")
        if found.get("attempts"):
            parts.append(f"attempt {found['attempts']}")
        if found.get("next_retry_at"):
            parts.append(f"next retry {found['next_retry_at']}")
        return " · ".join(parts)
    changes = file_changes(deployment)
    if changes:
        return "modified on robot: " + ", ".join(describe_change(item) for item in changes)
    return ""


def describe_change(item: dict[str, Any]) -> str:
    state = "restored" if item.get("restored_at") else "left as found"
    return f"{item.get('filepath')} {item.get('change')} at {item.get('detected_at')} ({state})"


def detail_fields(deployment: Any) -> list[tuple[str, Any]]:
    """Extra rows for ``deployments get``."""
    rows: list[tuple[str, Any]] = []
    found = error(deployment)
    if found is not None:
        rows += [
            ("Reason", found.get("message") or "no reason given"),
            ("Failing path", found.get("path") or "-"),
            ("Attempts", found.get("attempts") if found.get("attempts") is not None else "-"),
            ("Next retry", found.get("next_retry_at") or "-"),
            ("Failing since", found.get("since") or "-"),
        ]
    changes = file_changes(deployment)
    rows.append(
        (
            "Modified on robot",
            "; ".join(describe_change(item) for item in changes) if changes else "no",
        )
    )
    return rows


def print_reasons(deployments: list[Any], console: Any, seen: set[tuple[str, str]]) -> None:
    """For ``watch``: each deployment's reason, once per new reason."""
    for item in deployments:
        text = reason(item)
        if text and (item.id, text) not in seen:
            seen.add((item.id, text))
            status = output.status_text(item.status)
            console.print(f"  {item.id} ", status, f" {escape(text)}")
