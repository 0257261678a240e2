"""Filepath rules and the ``--root`` mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetconfig.agent.paths import (
    DEFAULT_ALLOWED_ROOTS,
    FilepathError,
    normalise_roots,
    to_host_path,
    validate_filepath,
    validate_filepaths,
)

ROOTS = DEFAULT_ALLOWED_ROOTS


@pytest.mark.parametrize(
    "path",
    [
        "/srv/miru/x.json",
        "/srv/miru/configs/v1/motion-control.yaml",
        "/srv/miru/a..b/c",
        "/srv/miru/.hidden",
        "/srv/miru/ünïcode/datei.json",
    ],
)
def test_accepted_paths(path: str) -> None:
    assert validate_filepath(path, ROOTS) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("srv/miru/x.json", "not absolute"),
        ("/srv/miru/../../etc/passwd", "'..'"),
        ("/srv/miru/..", "'..'"),
        ("/srv/miru/./x.json", "not normalised"),
        ("/srv/miru//x.json", "not normalised"),
        ("/srv/miru/x/", "not normalised"),
        ("//srv/miru/x.json", "not normalised"),
        ("/srv/miru/x\x00.json", "NUL"),
        ("/srv/miru/x\n.json", "control character"),
        ("/srv/miru/\udcff.json", "UTF-8"),
        ("/etc/passwd", "outside the allowed roots"),
        ("/srv/miru", "outside the allowed roots"),
        ("/srv/miruX/x.json", "outside the allowed roots"),
        ("/srv/" + "a" * 256, "longer than 255"),
        ("/srv/miru/" + "/".join(["d" * 200] * 25), "too long"),
        ("/srv/miru/.fleetconfig-abc-0.new", "reserved"),
    ],
)
def test_refused_paths(path: str, reason: str) -> None:
    with pytest.raises(FilepathError) as caught:
        validate_filepath(path, ROOTS)
    assert reason in caught.value.reason


@pytest.mark.parametrize("value", [None, 3, b"/srv/miru/x", ["/srv/miru/x"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(FilepathError, match="not a string"):
        validate_filepath(value, ROOTS)


def test_paths_must_be_unique_within_a_deployment() -> None:
    with pytest.raises(FilepathError, match="twice"):
        validate_filepaths(["/srv/miru/a.json", "/srv/miru/b.json", "/srv/miru/a.json"], ROOTS)


def test_a_path_cannot_also_be_the_directory_of_another() -> None:
    with pytest.raises(FilepathError, match="also a file"):
        validate_filepaths(["/srv/miru/a", "/srv/miru/a/b.json"], ROOTS)
    assert validate_filepaths(["/srv/miru/a.json", "/srv/miru/a/b.json"], ROOTS)


def test_several_allowed_roots() -> None:
    roots = normalise_roots(["/srv/miru", "/etc/robot"])
    assert validate_filepath("/etc/robot/x.yaml", roots) == "/etc/robot/x.yaml"
    with pytest.raises(FilepathError):
        validate_filepath("/etc/other.yaml", roots)


@pytest.mark.parametrize("roots", [[], ["/"], ["srv/miru"], ["/srv/miru/"], ["/srv/../etc"]])
def test_bad_allowed_roots_are_refused(roots: list[str]) -> None:
    with pytest.raises(ValueError):
        normalise_roots(roots)


def test_root_mapping() -> None:
    assert to_host_path("/srv/miru/x.json", Path("/")) == Path("/srv/miru/x.json")
    assert to_host_path("/srv/miru/x.json", Path("/tmp/demo")) == Path("/tmp/demo/srv/miru/x.json")
