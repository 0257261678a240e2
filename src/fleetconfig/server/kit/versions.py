"""API versions: which ``Miru-Version`` values are served, their order, and the header check.

The version is an input of the HTTP layer only (API_VERSIONS.md decision 2): what each
version adds, removes or shows differently is one table, :mod:`fleetconfig.server.api_versions`;
domain code never asks which version it serves.
"""

from fleetconfig.protocol import AGENT_API_VERSION as AGENT_API_VERSION
from fleetconfig.server.kit.errors import (
    APIVersionEndOfLife,
    InvalidRequest,
    MissingAPIVersion,
    NotFound,
    UnsupportedAPIVersion,
)

TETONS = "2026-03-09.tetons"
RAINIER = "2026-05-06.rainier"
EVERGLADES = "2026-08-17.everglades"
# Oldest first: a version has everything of the ones before it unless the table says otherwise.
SUPPORTED_VERSIONS: tuple[str, ...] = (TETONS, RAINIER, EVERGLADES)
END_OF_LIFE_VERSIONS: frozenset[str] = frozenset({"2025-10-21.zion"})
LATEST = EVERGLADES
# The agent API (``/agent/v1``) is versioned on its own (``AGENT_API_VERSION``, from the
# shared protocol module), after the official agent protocol; everything under this path is.
AGENT_API_PREFIX = "/agent/"


def rank(version: str) -> int:
    return SUPPORTED_VERSIONS.index(version)


def has(version: str, since: str = TETONS, until: str | None = None) -> bool:
    """Whether ``version`` has something added in ``since`` and removed in ``until``."""
    if rank(version) < rank(since):
        return False
    return until is None or rank(version) < rank(until)


def check_version(header_value: str | None) -> str:
    """Return the version to serve, or raise the documented 400."""
    if header_value is None or not header_value.strip():
        raise MissingAPIVersion(
            "The Miru-Version header is required", supported=list(SUPPORTED_VERSIONS)
        )
    version = header_value.strip()
    if version in SUPPORTED_VERSIONS:
        return version
    if version in END_OF_LIFE_VERSIONS:
        raise APIVersionEndOfLife(
            f"API version {version} has reached end of life", supported=list(SUPPORTED_VERSIONS)
        )
    raise UnsupportedAPIVersion(
        f"Unsupported API version {version!r}", supported=list(SUPPORTED_VERSIONS)
    )


def not_in_version(
    what: str, version: str, since: str, until: str | None = None, **params: object
) -> InvalidRequest:
    """The 400 for input that ``version`` does not have (decision 3): it names the input and
    the versions that do have it, so that a client on an older header learns what to set."""
    if rank(version) < rank(since):
        hint = f"available from {since}"
        params["available_from"] = since
    else:
        assert until is not None
        hint = f"removed in {until}"
        params["removed_in"] = until
    return InvalidRequest(
        f"{what} is not part of API version {version} ({hint})", version=version, **params
    )


def route_not_in_version(
    method: str, path: str, version: str, since: str, until: str | None
) -> NotFound:
    """The 404 for an operation that ``version`` does not have, with the same hint."""
    if rank(version) < rank(since):
        hint, params = f"available from {since}", {"available_from": since}
    else:
        assert until is not None
        hint, params = f"removed in {until}", {"removed_in": until}
    return NotFound(
        f"No route for {method} {path} in API version {version} ({hint})",
        version=version,
        **params,
    )
