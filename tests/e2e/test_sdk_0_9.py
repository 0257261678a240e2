"""The official ``miru-platform-sdk`` 0.9.0 on tetons: ``sdk_0_9/``'s modules, run by this
project's pytest in an environment where the client is 0.9.0 (see ``sdk_0_9/conftest.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.device_sdk import REPO
from tests.e2e.sdk_0_9.conftest import SDK_VERSION
from tests.e2e.sdk_venvs import sdk_python

pytestmark = pytest.mark.e2e

MODULES = Path(__file__).with_name("sdk_0_9")


def test_sdk_0_9_on_tetons() -> None:
    python = sdk_python(SDK_VERSION, over=Path(sysconfig.get_path("purelib")))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIRU_")}
    completed = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(MODULES),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report
    passed = re.search(r"(\d+) passed", report)
    # Every module was collected (the SDK in front is 0.9.0), and every test in it ran.
    assert passed is not None and int(passed.group(1)) >= 9, report
