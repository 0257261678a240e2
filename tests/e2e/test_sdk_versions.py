"""The official Platform SDKs after 0.9.0, each in its own environment, against a real server
process with strict response validation: 0.10.0 on rainier, 0.11.0 on everglades, and 0.11.0
on its default (tetons) header, where every later-version input gets the clear 400.

Each journey is a script in ``sdk_journeys/`` that asserts as it goes (see ``sdk_venvs``).
"""

from __future__ import annotations

from tests.e2e.sdk_venvs import run_journey
from tests.support import EVERGLADES, RAINIER, ServerProcess


def test_sdk_0_11_on_everglades(server: ServerProcess) -> None:
    result = run_journey("0.11.0", "everglades", server.base_url, server.admin_key, EVERGLADES)
    assert result["ok"] is True


def test_sdk_0_11_on_its_default_tetons_header(server: ServerProcess) -> None:
    result = run_journey("0.11.0", "default_tetons", server.base_url, server.admin_key, None)
    assert result["ok"] is True and int(result["refused"]) >= 15  # type: ignore[call-overload]


def test_sdk_0_10_on_rainier(server: ServerProcess) -> None:
    result = run_journey("0.10.0", "rainier", server.base_url, server.admin_key, RAINIER)
    assert result["ok"] is True
