"""Git remote parsing: every shape git accepts, the three host kinds, and clear refusals."""

from __future__ import annotations

import pytest

from fleetconfig.server.git_commits.remotes import (
    GitRemote,
    InvalidRemote,
    parse_remote,
    without_credentials,
)
from fleetconfig.server.git_commits.service import truncate_message

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://github.com/acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        ("https://github.com/acme/robot", GitRemote("github", "github.com", "acme", "robot")),
        ("https://github.com/acme/robot/", GitRemote("github", "github.com", "acme", "robot")),
        (
            "http://www.github.com/acme/robot.git",
            GitRemote("github", "github.com", "acme", "robot"),
        ),
        ("https://GitHub.com/Acme/Robot.git", GitRemote("github", "github.com", "Acme", "Robot")),
        ("git@github.com:acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        ("github.com:acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        ("git@github.com:/acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        ("ssh://git@github.com/acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        (
            "ssh://git@ssh.github.com:443/acme/robot.git",
            GitRemote("github", "github.com", "acme", "robot"),
        ),
        ("git://github.com/acme/robot.git", GitRemote("github", "github.com", "acme", "robot")),
        ("git+ssh://git@github.com/acme/robot", GitRemote("github", "github.com", "acme", "robot")),
        (
            "https://x-access-token:ghp_secret@github.com/acme/robot.git",
            GitRemote("github", "github.com", "acme", "robot"),
        ),
        (
            "https://github.com/acme/.github.git",
            GitRemote("github", "github.com", "acme", ".github"),
        ),
        (
            "https://github.com/acme/robot.js.git",
            GitRemote("github", "github.com", "acme", "robot.js"),
        ),
        (
            "  https://github.com/acme/robot.git\n",
            GitRemote("github", "github.com", "acme", "robot"),
        ),
        (
            "ssh://git@gitlab.com/group/sub/repo.git",
            GitRemote("gitlab", "gitlab.com", "group/sub", "repo"),
        ),
        (
            "ssh://git@gitlab.com/group/sub/repo",
            GitRemote("gitlab", "gitlab.com", "group/sub", "repo"),
        ),
        (
            "git@gitlab.com:group/a/b/c/repo.git",
            GitRemote("gitlab", "gitlab.com", "group/a/b/c", "repo"),
        ),
        ("https://gitlab.com/group/repo.git", GitRemote("gitlab", "gitlab.com", "group", "repo")),
        (
            "ssh://git@altssh.gitlab.com:443/group/repo.git",
            GitRemote("gitlab", "gitlab.com", "group", "repo"),
        ),
        (
            "https://gitlab.example.com/team/repo.git",
            GitRemote("gitlab", "gitlab.example.com", "team", "repo"),
        ),
        (
            "https://gitlab.example.com:8443/team/repo.git",
            GitRemote("gitlab", "gitlab.example.com:8443", "team", "repo"),
        ),
        (
            "git@gitlab.example.com:team/repo.git",
            GitRemote("gitlab", "gitlab.example.com", "team", "repo"),
        ),
        (
            "ssh://git@gitlab.example.com:2222/team/repo.git",
            GitRemote("gitlab", "gitlab.example.com", "team", "repo"),
        ),
        (
            "https://github.example.com/org/repo",
            GitRemote("github", "github.example.com", "org", "repo"),
        ),
        (
            "https://user@bitbucket.org/team/repo.git",
            GitRemote("bitbucket", "bitbucket.org", "team", "repo"),
        ),
        (
            "git@bitbucket.org:team/repo.git",
            GitRemote("bitbucket", "bitbucket.org", "team", "repo"),
        ),
        (
            "https://bitbucket.org/team/repo",
            GitRemote("bitbucket", "bitbucket.org", "team", "repo"),
        ),
    ],
)
def test_parses(origin: str, expected: GitRemote) -> None:
    assert parse_remote(origin) == expected


def test_links_follow_each_host_layout() -> None:
    github = parse_remote("git@github.com:acme/robot.git")
    assert github.repository_url == "https://github.com/acme/robot"
    assert github.commit_url(SHA) == f"https://github.com/acme/robot/commit/{SHA}"
    gitlab = parse_remote("ssh://git@gitlab.com/group/sub/repo.git")
    assert gitlab.repository_url == "https://gitlab.com/group/sub/repo"
    assert gitlab.commit_url(SHA) == f"https://gitlab.com/group/sub/repo/-/commit/{SHA}"
    bitbucket = parse_remote("git@bitbucket.org:team/repo.git")
    assert bitbucket.repository_url == "https://bitbucket.org/team/repo"
    assert bitbucket.commit_url(SHA) == f"https://bitbucket.org/team/repo/commits/{SHA}"
    port = parse_remote("https://gitlab.example.com:8443/team/repo.git")
    assert port.repository_url == "https://gitlab.example.com:8443/team/repo"


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("https://example.com/acme/robot.git", "unsupported git host"),
        ("git@example.org:acme/robot.git", "unsupported git host"),
        ("https://github.io/acme/robot", "unsupported git host"),
        ("https://notgithub.com/acme/robot", "unsupported git host"),
        ("https://github.com/acme", "owner/repo"),
        ("https://github.com/", "owner/repo"),
        ("https://github.com/acme/robot/tree/main", "owner/repo"),
        ("https://bitbucket.org/a/b/c", "owner/repo"),
        ("https://gitlab.com/project", "group"),
        ("https://github.com/acme/../robot", "segment"),
        ("https://github.com/acme/rob%20ot", "segment"),
        ("https://github.com/acme/robot?ref=main", "query"),
        ("https://github.com/acme/robot#readme", "query"),
        ("ftp://github.com/acme/robot.git", "scheme"),
        ("file:///srv/git/robot.git", "scheme"),
        ("/srv/git/robot.git", "not a git remote"),
        ("robot.git", "not a git remote"),
        ("https://github.com:notaport/acme/robot", "malformed"),
        ("https://github.com/acme/ro bot", "whitespace"),
        ("https:///acme/robot", "no host"),
        ("https://github.com/" + "a" * 256 + "/robot", "longer than"),
    ],
)
def test_refuses(origin: str, reason: str) -> None:
    with pytest.raises(InvalidRemote, match=reason):
        parse_remote(origin)


@pytest.mark.parametrize(
    ("origin", "stored"),
    [
        ("https://x-access-token:ghp_secret@github.com/a/b.git", "https://github.com/a/b.git"),
        ("https://user@bitbucket.org/a/b.git", "https://bitbucket.org/a/b.git"),
        ("https://github.com/a/b.git", "https://github.com/a/b.git"),
        ("ssh://git@gitlab.com/a/b.git", "ssh://git@gitlab.com/a/b.git"),
        ("ssh://git:secret@gitlab.com/a/b.git", "ssh://gitlab.com/a/b.git"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
    ],
)
def test_credentials_are_not_kept(origin: str, stored: str) -> None:
    assert without_credentials(origin) == stored


def test_truncate_message_cuts_on_character_boundaries() -> None:
    assert truncate_message("short") == "short"
    assert truncate_message("x" * 2048) == "x" * 2048
    assert truncate_message("x" * 2049) == "x" * 2048
    # A 4-byte character straddling the limit is dropped whole.
    assert truncate_message("x" * 2046 + "😀") == "x" * 2046
    assert len(truncate_message("é" * 3000).encode()) == 2048
