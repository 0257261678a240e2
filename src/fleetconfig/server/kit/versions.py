"""API versions: which ``Miru-Version`` values are served, and the check of the header.

The version is an input of the HTTP layer only. A later version adds an entry here and its
own request/response mapping; domain code does not change.
"""

from fleetconfig.protocol import AGENT_API_VERSION as AGENT_API_VERSION
from fleetconfig.server.kit.errors import (
    APIVersionEndOfLife,
    MissingAPIVersion,
    UnsupportedAPIVersion,
)

TETONS = "2026-03-09.tetons"
SUPPORTED_VERSIONS: tuple[str, ...] = (TETONS,)
END_OF_LIFE_VERSIONS: frozenset[str] = frozenset({"2025-10-21.zion"})
LATEST = TETONS
# The agent API (``/agent/v1``) is versioned on its own (``AGENT_API_VERSION``, from the
# shared protocol module), after the official agent protocol; everything under this path is.
AGENT_API_PREFIX = "/agent/"


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
