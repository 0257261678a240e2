"""Scope rules and API version checks."""

from __future__ import annotations

import pytest

from fleetconfig.server.auth.principal import Principal
from fleetconfig.server.auth.scopes import MANAGE_ALL, expand_scope_names, grants
from fleetconfig.server.kit.errors import (
    APIVersionEndOfLife,
    Forbidden,
    MissingAPIVersion,
    UnsupportedAPIVersion,
)
from fleetconfig.server.kit.versions import TETONS, check_version


def principal(*scopes: str) -> Principal:
    return Principal(id="api_key_x", name="x", workspace_id="wsp_x", scopes=scopes)


def test_manage_grants_every_action_of_its_resource_only() -> None:
    assert grants(["devices:manage"], "devices:provision")
    assert grants(["devices:manage"], "devices:read")
    assert not grants(["devices:manage"], "deployments:read")


def test_write_does_not_imply_read() -> None:
    assert not grants(["devices:write"], "devices:read")


def test_require_groups_are_anded_and_scopes_within_a_group_ored() -> None:
    principal("deployments:write", "deployments:stage").require(
        ("deployments:write",), ("deployments:stage",)
    )
    with pytest.raises(Forbidden) as raised:
        principal("deployments:write").require(("deployments:write",), ("deployments:deploy",))
    assert raised.value.params["required_scopes"] == ["deployments:deploy"]
    principal("devices:provision").require(("devices:write", "devices:provision"))


def test_scope_names() -> None:
    assert expand_scope_names(["all"]) == MANAGE_ALL
    assert expand_scope_names(["devices:read", "devices:read"]) == ["devices:read"]
    with pytest.raises(ValueError):
        expand_scope_names(["devices:fly"])


def test_versions() -> None:
    assert check_version(TETONS) == TETONS
    with pytest.raises(MissingAPIVersion):
        check_version(None)
    with pytest.raises(MissingAPIVersion):
        check_version(" ")
    with pytest.raises(APIVersionEndOfLife):
        check_version("2025-10-21.zion")
    assert check_version(" 2026-05-06.rainier ") == "2026-05-06.rainier"
    assert check_version("2026-08-17.everglades") == "2026-08-17.everglades"
    with pytest.raises(UnsupportedAPIVersion):
        check_version("2026-05-06.rainier-beta.3")
