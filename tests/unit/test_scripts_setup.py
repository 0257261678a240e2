"""``scripts/setup demo`` (what ``scripts/demo`` runs) installs only the demo's needs, quietly.

Run against a stand-in Python that records what pip is asked to install and prints the kind
of noise setuptools does: the script's logic is tested, no package is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOISE = "SetuptoolsDeprecationWarning: License classifiers are deprecated. !!!!!!!!"

FAKE_PYTHON = f"""#!/usr/bin/env bash
# Stands in for python3: `-m venv DIR` makes DIR/bin/python, which records its arguments.
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  cat >"$3/bin/python" <<'INNER'
#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/../calls.log"
echo "{NOISE}" >&2
[ -z "${{FAIL_INSTALL:-}}" ] || {{ echo "ERROR: no matching distribution" >&2; exit 1; }}
INNER
  chmod +x "$3/bin/python"
fi
"""


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", root / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    # The test install's further steps (SDK environments, CUE's npm package), recorded.
    (root / "scripts" / "sdk-venv").write_text('echo "sdk-venv $*" >>.venv/calls.log\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text('#!/usr/bin/env bash\necho "npm $*" >>.venv/calls.log\n')
    (bin_dir / "npm").chmod(0o755)
    return root


def setup(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/setup", *args],
        cwd=root,
        env={
            "PATH": f"{root.parent / 'bin'}:/usr/bin:/bin",
            "PYTHON": str(root.parent / "python3"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def calls(root: Path) -> list[str]:
    log = root / ".venv" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_demo_installs_the_server_only_and_shows_one_line(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    first = setup(root, "demo")
    assert first.returncode == 0, first.stderr
    installs = [call for call in calls(root) if " -e " in call]
    assert installs == ["-m pip install --quiet -e .[server]"]
    assert first.stdout == "" and len(first.stderr.splitlines()) == 1, first.stderr
    assert NOISE not in first.stderr and NOISE in (root / ".venv" / "install.log").read_text()
    # Again: nothing to do, nothing printed.
    again = setup(root, "demo")
    assert again.returncode == 0 and again.stderr == ""
    assert len(calls(root)) == 2
    assert not any(call.startswith(("sdk-venv", "npm")) for call in calls(root))


def test_the_test_tools_are_installed_by_plain_setup_and_cover_the_demo(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert setup(root).returncode == 0
    assert [call for call in calls(root) if " -e " in call] == ["-m pip install --quiet -e .[test]"]
    assert any(call.startswith("sdk-venv") for call in calls(root))
    assert any(call.startswith("npm ci") for call in calls(root))
    before = len(calls(root))
    assert setup(root, "demo").returncode == 0
    assert len(calls(root)) == before  # the test install already holds the demo's needs


def test_a_failed_install_shows_the_log(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    failed = setup(root, "demo", FAIL_INSTALL="1")
    assert failed.returncode == 1
    assert "no matching distribution" in failed.stderr and "install.log" in failed.stderr
    assert not (root / ".venv" / ".fleetconfig-installed-demo").exists()


def test_scripts_demo_asks_for_the_demo_install() -> None:
    assert "bash scripts/setup demo" in (REPO / "scripts" / "demo").read_text()
