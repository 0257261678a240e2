"""API key scopes: ``resource:action``; ``resource:manage`` grants every action on it."""

from __future__ import annotations

from collections.abc import Iterable

RESOURCES = (
    "config_types",
    "config_schemas",
    "config_instances",
    "git_commits",
    "releases",
    "devices",
    "deployments",
    # Everglades / rainier (API_VERSIONS.md section 3).
    "groups",
    "provisioning_tokens",
    # fleetconfig's extensions, in the order their migrations added them: the audit trail
    # (read only: nothing writes it but the write paths), webhooks, rollouts.
    "audit",
    "webhooks",
    "rollouts",
)
READ_ONLY = frozenset({"audit"})
EXTRA_ACTIONS = {
    "devices": ("provision",),
    "deployments": ("stage", "deploy", "archive"),
}


def all_scopes() -> list[str]:
    scopes: list[str] = []
    for resource in RESOURCES:
        writes = () if resource in READ_ONLY else ("write", *EXTRA_ACTIONS.get(resource, ()))
        for action in ("read", *writes, "manage"):
            scopes.append(f"{resource}:{action}")
    return scopes


MANAGE_ALL = [f"{resource}:manage" for resource in RESOURCES]
KNOWN_SCOPES = frozenset(all_scopes())


def expand_scope_names(names: Iterable[str]) -> list[str]:
    """``all`` means every ``*:manage`` scope; unknown names raise ``ValueError``."""
    result: list[str] = []
    for name in names:
        chosen = MANAGE_ALL if name == "all" else [name]
        for scope in chosen:
            if scope not in KNOWN_SCOPES:
                raise ValueError(f"unknown scope {scope!r}")
            if scope not in result:
                result.append(scope)
    return result


def grants(held: Iterable[str], required: str) -> bool:
    held_set = set(held)
    resource = required.split(":", 1)[0]
    return required in held_set or f"{resource}:manage" in held_set


def missing(held: Iterable[str], all_of: Iterable[Iterable[str]]) -> list[list[str]]:
    """Check ``all_of`` groups (each satisfied by any one scope); return every unmet group,
    so that one refusal can name all that the key lacks."""
    held_list = list(held)
    unmet: list[list[str]] = []
    for group in all_of:
        group_list = list(group)
        if not any(grants(held_list, scope) for scope in group_list):
            unmet.append(group_list)
    return unmet
