"""What the server's ``fleetconfig`` extension of a deployment says, for people: why it is
retrying or failed (message, failing path, attempts, next retry), which of its files
were modified on the robot, and whether the robot's software confirmed or rejected it.
The official client keeps the extension as an extra field."""

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


def health(deployment: Any) -> dict[str, Any]:
    value = extension(deployment).get("health")
    return value if isinstance(value, dict) else {}


def health_text(deployment: Any) -> str:
    """``confirmed``, ``rejected``, ``not confirmed`` (the device's target, nothing said yet),
    or '' (a deployment no robot runs, or a server without the extension)."""
    status = health(deployment).get("status")
    if status in ("confirmed", "rejected"):
        return str(status)
    if status == "unknown" and getattr(deployment, "target_status", None) == "deployed":
        return "not confirmed"
    return ""


def reason(deployment: Any) -> str:
    """One line: why it fails, else why the robot rejected it, else which files were
    modified on the robot, else ''."""
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
    verdict = health(deployment)
    if verdict.get("status") == "rejected":
        return f"rejected by the robot: {verdict.get('reason') or 'no reason given'}"
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
    verdict = health(deployment)
    if verdict:
        said = health_text(deployment) or "nothing said"
        if verdict.get("reason"):
            said += f": {verdict['reason']}"
        if verdict.get("reported_at"):
            said += f" (at {verdict['reported_at']})"
        rows.append(("Robot health", said))
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
