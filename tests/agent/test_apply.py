"""Writing and removing deployments' files: all or none, refusals, rollback, removal rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleetconfig.agent.apply import (
    Applier,
    ApplyError,
    ApplyPlan,
    ApplySettings,
    ConfigFile,
    Removal,
    TargetWrite,
    execute_plan,
)
from fleetconfig.agent.paths import RESERVED_PREFIX
from fleetconfig.agent.transaction import RecoveryResult


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def applier(tmp_path: Path, root: Path) -> Applier:
    return Applier(tmp_path / "state", ApplySettings(root=root))


def host(root: Path, device_path: str) -> Path:
    return root / device_path.lstrip("/")


def leftovers(directory: Path) -> list[Path]:
    """Temporary or backup files a transaction left behind."""
    if not directory.exists():
        return []
    return [path for path in directory.rglob("*") if path.name.startswith(RESERVED_PREFIX)]


def test_writes_every_file_with_mode_0644_whatever_the_umask(applier: Applier, root: Path) -> None:
    previous = os.umask(0o077)
    try:
        applier.write_deployment(
            [
                ConfigFile("/srv/miru/a.json", b'{"a": 1}'),
                ConfigFile("/srv/miru/deep/er/b.yaml", b"b: 2\n"),
            ]
        )
    finally:
        os.umask(previous)
    a, b = host(root, "/srv/miru/a.json"), host(root, "/srv/miru/deep/er/b.yaml")
    assert a.read_bytes() == b'{"a": 1}'
    assert b.read_bytes() == b"b: 2\n"
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.stat().st_mode) == 0o644
    assert leftovers(root) == []
    assert not (applier.transactions.journal.path).exists()


def test_file_mode_is_configurable(tmp_path: Path, root: Path) -> None:
    applier = Applier(tmp_path / "state", ApplySettings(root=root, file_mode=0o600))
    applier.write_deployment([ConfigFile("/srv/miru/secret.json", b"{}")])
    assert stat.S_IMODE(host(root, "/srv/miru/secret.json").stat().st_mode) == 0o600


def test_replaces_existing_files(applier: Applier, root: Path) -> None:
    applier.write_deployment([ConfigFile("/srv/miru/a.json", b"old")])
    inode = host(root, "/srv/miru/a.json").stat().st_ino
    applier.write_deployment([ConfigFile("/srv/miru/a.json", b"new")])
    assert host(root, "/srv/miru/a.json").read_bytes() == b"new"
    # Replaced by rename, never rewritten in place (a reader sees old or new bytes).
    assert host(root, "/srv/miru/a.json").stat().st_ino != inode
    assert leftovers(root) == []


@pytest.mark.parametrize(
    "bad_path",
    ["/etc/passwd", "/srv/miru/../../etc/passwd", "relative.json", "/srv/miru/a.json"],
)
def test_a_refused_path_fails_the_deployment_without_touching_any_file(
    applier: Applier, root: Path, bad_path: str
) -> None:
    files = [
        ConfigFile("/srv/miru/a.json", b"A"),
        ConfigFile("/srv/miru/new/b.json", b"B"),
        ConfigFile(bad_path, b"evil"),
    ]
    with pytest.raises(ApplyError) as caught:
        applier.write_deployment(files)
    assert caught.value.permanent
    assert not root.exists()  # not even a directory was created


def test_a_write_failure_rolls_every_file_back(
    applier: Applier, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applier.write_deployment(
        [ConfigFile("/srv/miru/one.json", b"one-old"), ConfigFile("/srv/miru/two.json", b"two-old")]
    )
    real_replace = os.replace
    renamed: list[str] = []

    def failing_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if str(source).endswith(".new") and str(target) == str(host(root, "/srv/miru/two.json")):
            raise OSError(28, "No space left on device", str(target))
        real_replace(source, target)
        renamed.append(str(target))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ApplyError) as caught:
        applier.write_deployment(
            [
                ConfigFile("/srv/miru/one.json", b"one-new"),
                ConfigFile("/srv/miru/fresh/three.json", b"three-new"),
                ConfigFile("/srv/miru/two.json", b"two-new"),
            ]
        )
    monkeypatch.undo()
    assert not caught.value.permanent
    assert "No space left" in caught.value.reason
    # Two files were already renamed into place when the third failed: both undone.
    assert str(host(root, "/srv/miru/one.json")) in renamed
    assert str(host(root, "/srv/miru/fresh/three.json")) in renamed
    assert host(root, "/srv/miru/one.json").read_bytes() == b"one-old"
    assert host(root, "/srv/miru/two.json").read_bytes() == b"two-old"
    assert not host(root, "/srv/miru/fresh/three.json").exists()
    assert not host(root, "/srv/miru/fresh").exists()  # the directory it made is gone too
    assert leftovers(root) == []
    assert not applier.transactions.journal.path.exists()


def test_a_rollback_that_fails_is_finished_by_recover(
    applier: Applier, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applier.write_deployment(
        [ConfigFile("/srv/miru/one.json", b"one-old"), ConfigFile("/srv/miru/two.json", b"two-old")]
    )
    real_replace = os.replace

    def broken_disk(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        # Every rename onto two.json fails, the rollback's too.
        if str(target) == str(host(root, "/srv/miru/two.json")):
            raise OSError(5, "Input/output error", str(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", broken_disk)
    with pytest.raises(ApplyError) as caught:
        applier.write_deployment(
            [ConfigFile("/srv/miru/one.json", b"one-new"), ConfigFile("/srv/miru/two.json", b"x")]
        )
    monkeypatch.undo()
    assert not caught.value.permanent
    # one.json was still put back; the journal stays for what could not be undone.
    assert host(root, "/srv/miru/one.json").read_bytes() == b"one-old"
    assert applier.transactions.journal.path.exists()
    assert applier.recover() is RecoveryResult.ROLLED_BACK
    assert host(root, "/srv/miru/one.json").read_bytes() == b"one-old"
    assert host(root, "/srv/miru/two.json").read_bytes() == b"two-old"
    assert leftovers(root) == []
    assert not applier.transactions.journal.path.exists()


def test_a_real_filesystem_error_rolls_back(applier: Applier, root: Path) -> None:
    applier.write_deployment([ConfigFile("/srv/miru/a.json", b"old")])
    # Someone put a directory where a config file must go: renaming over it fails.
    blocker = host(root, "/srv/miru/b.json")
    blocker.mkdir()
    (blocker / "keep").write_text("x")
    with pytest.raises(ApplyError) as caught:
        applier.write_deployment(
            [ConfigFile("/srv/miru/a.json", b"new"), ConfigFile("/srv/miru/b.json", b"new")]
        )
    assert not caught.value.permanent
    assert host(root, "/srv/miru/a.json").read_bytes() == b"old"
    assert (blocker / "keep").read_text() == "x"
    assert leftovers(root) == []


def test_a_symlink_cannot_lead_a_write_outside_the_allowed_root(
    applier: Applier, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    host(root, "/srv/miru").mkdir(parents=True)
    host(root, "/srv/miru/escape").symlink_to(outside)
    with pytest.raises(ApplyError) as caught:
        applier.write_deployment([ConfigFile("/srv/miru/escape/x.json", b"evil")])
    assert caught.value.permanent
    assert list(outside.iterdir()) == []


def test_a_symlink_at_the_target_is_replaced_not_followed(
    applier: Applier, root: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    host(root, "/srv/miru").mkdir(parents=True)
    host(root, "/srv/miru/x.json").symlink_to(victim)
    applier.write_deployment([ConfigFile("/srv/miru/x.json", b"config")])
    assert victim.read_text() == "precious"
    assert not host(root, "/srv/miru/x.json").is_symlink()
    assert host(root, "/srv/miru/x.json").read_bytes() == b"config"


def test_removal_keeps_the_paths_the_target_uses(applier: Applier, root: Path) -> None:
    applier.write_deployment(
        [ConfigFile("/srv/miru/shared.json", b"s"), ConfigFile("/srv/miru/old-only.json", b"o")]
    )
    applier.remove_deployment(
        ["/srv/miru/shared.json", "/srv/miru/old-only.json", "/srv/miru/never-written.json"],
        keep={"/srv/miru/shared.json"},
    )
    assert host(root, "/srv/miru/shared.json").read_bytes() == b"s"
    assert not host(root, "/srv/miru/old-only.json").exists()
    assert leftovers(root) == []


def test_removal_refuses_paths_outside_the_roots(applier: Applier, tmp_path: Path) -> None:
    with pytest.raises(ApplyError) as caught:
        applier.remove_deployment(["/etc/passwd"])
    assert caught.value.permanent


def test_removal_is_all_or_none(
    applier: Applier, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applier.write_deployment([ConfigFile("/srv/miru/a", b"a"), ConfigFile("/srv/miru/b", b"b")])
    real_unlink = os.unlink
    seen: list[str] = []

    def failing_unlink(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if str(path) == str(host(root, "/srv/miru/b")):
            seen.append(str(path))
            raise PermissionError(13, "Permission denied", str(path))
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", failing_unlink)
    with pytest.raises(ApplyError):
        applier.remove_deployment(["/srv/miru/a", "/srv/miru/b"])
    monkeypatch.undo()
    assert seen
    assert host(root, "/srv/miru/a").read_bytes() == b"a"
    assert host(root, "/srv/miru/b").read_bytes() == b"b"
    assert leftovers(root) == []


def test_plan_writes_the_target_then_removes_archived_files_except_shared(
    applier: Applier, root: Path
) -> None:
    applier.write_deployment(
        [ConfigFile("/srv/miru/shared.json", b"v1"), ConfigFile("/srv/miru/v1-only.json", b"v1")]
    )
    plan = ApplyPlan(
        write=TargetWrite(
            "dpl_2",
            (
                ConfigFile("/srv/miru/shared.json", b"v2"),
                ConfigFile("/srv/miru/v2-only.json", b"v2"),
            ),
        ),
        target_paths=frozenset({"/srv/miru/shared.json", "/srv/miru/v2-only.json"}),
        removals=(Removal("dpl_1", ("/srv/miru/shared.json", "/srv/miru/v1-only.json")),),
    )
    result = execute_plan(applier, plan)
    assert result.outcomes == {"dpl_2": None, "dpl_1": None}
    assert host(root, "/srv/miru/shared.json").read_bytes() == b"v2"
    assert host(root, "/srv/miru/v2-only.json").read_bytes() == b"v2"
    assert not host(root, "/srv/miru/v1-only.json").exists()


def test_plan_removes_nothing_when_the_target_fails(applier: Applier, root: Path) -> None:
    applier.write_deployment([ConfigFile("/srv/miru/v1.json", b"v1")])
    plan = ApplyPlan(
        write=TargetWrite("dpl_2", (ConfigFile("/etc/evil.json", b"x"),)),
        target_paths=frozenset({"/etc/evil.json"}),
        removals=(Removal("dpl_1", ("/srv/miru/v1.json",)),),
    )
    result = execute_plan(applier, plan)
    error = result.outcomes["dpl_2"]
    assert error is not None and error.permanent
    assert "dpl_1" not in result.outcomes
    assert host(root, "/srv/miru/v1.json").read_bytes() == b"v1"


def test_plan_can_hold_removals(applier: Applier, root: Path) -> None:
    applier.write_deployment([ConfigFile("/srv/miru/v1.json", b"v1")])
    plan = ApplyPlan(removals=(Removal("dpl_1", ("/srv/miru/v1.json",)),), hold_removals=True)
    assert execute_plan(applier, plan).outcomes == {}
    assert host(root, "/srv/miru/v1.json").exists()


def test_recover_with_no_journal_does_nothing(applier: Applier) -> None:
    assert applier.recover() is None
