"""Property-based fuzzing of every operation in our own OpenAPI document (schemathesis).

Bad input of any kind must get a 4xx: the run fails on any 5xx.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess

EXAMPLES_PER_OPERATION = os.environ.get("FLEETCONFIG_FUZZ_EXAMPLES", "25")


def _schemathesis() -> str | None:
    beside_python = Path(sys.executable).with_name("schemathesis")
    return str(beside_python) if beside_python.exists() else shutil.which("schemathesis")


SCHEMATHESIS = _schemathesis()


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed")
def test_no_operation_answers_5xx(server: ServerProcess) -> None:
    assert SCHEMATHESIS is not None
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{server.base_url}/openapi.json",
            "-H",
            f"X-API-Key: {server.admin_key}",
            "-H",
            "Miru-Version: 2026-03-09.tetons",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            EXAMPLES_PER_OPERATION,
            # The device stream never ends by design; it is exercised by the push tests.
            "--exclude-path-regex",
            "/agent/v1/device/stream",
            "--seed",
            "20261129",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout
