"""The agent runs on robots with a small set of dependencies: it must never pull in the server."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fleetconfig.agent

FORBIDDEN = ("fleetconfig.server", "sqlalchemy", "fastapi", "jinja2", "pydantic", "alembic")


def test_importing_every_agent_module_loads_no_server_dependency() -> None:
    modules = [
        f"fleetconfig.agent.{info.name}"
        for info in pkgutil.iter_modules(fleetconfig.agent.__path__)
    ]
    assert "fleetconfig.agent.device_api" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}"
        f" or m.startswith('fleetconfig.server')))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"
