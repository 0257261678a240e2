"""One virtual environment per official Platform SDK release, so that each release is tested
as its users install it (the project's own environment holds 0.11.0, the CLI's client).

Environments are made once by ``scripts/sdk-venv``, in ``.sdk-venvs/`` at the repository root
(ignored by git), and reused; making one installs ``miru-platform-sdk==<version>`` with pip
(about a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests import device_sdk

JOURNEYS = Path(__file__).with_name("sdk_journeys")


def sdk_python(version: str, over: Path | None = None) -> Path:
    """The interpreter of an environment holding exactly ``miru-platform-sdk==version``;
    ``over``: in front of those site-packages (``scripts/sdk-venv --over``)."""
    return device_sdk.sdk_python(f"miru-platform-sdk=={version}", over)


def run_journey(
    version: str, journey: str, base_url: str, api_key: str, api_version: str | None
) -> dict[str, object]:
    """Run ``sdk_journeys/<journey>.py`` with SDK ``version``; return what it printed (JSON).

    The journey asserts as it goes; a failure shows its traceback here.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MIRU_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(MIRU_BASE_URL=f"{base_url}/beta", MIRU_API_KEY=api_key)
    if api_version is not None:
        env["MIRU_API_VERSION"] = api_version
    completed = subprocess.run(
        [str(sdk_python(version)), str(JOURNEYS / f"{journey}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
