"""Reading the git repository ``release create`` runs in (real ``git``, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetconfig.cli.git import GitError, parse_remote, read_repository, strip_credentials
from tests.cli.conftest import commit_all, git, make_repo


@pytest.mark.parametrize(
    ("url", "kind", "owner", "name"),
    [
        ("https://github.com/acme/robots.git", "github", "acme", "robots"),
        ("https://github.com/acme/robots", "github", "acme", "robots"),
        ("git@github.com:acme/robots.git", "github", "acme", "robots"),
        ("ssh://git@ssh.github.com:443/acme/robots.git", "github", "acme", "robots"),
        ("git@gitlab.com:acme/robots.git", "gitlab", "acme", "robots"),
        ("https://gitlab.com/acme/platform/robots.git", "gitlab", "acme/platform", "robots"),
        ("https://gitlab.example.com/acme/robots.git", "gitlab", "acme", "robots"),
        ("git@bitbucket.org:acme/robots.git", "bitbucket", "acme", "robots"),
        ("https://ci:secret-token@bitbucket.org/acme/robots.git", "bitbucket", "acme", "robots"),
    ],
)
def test_remotes_of_the_three_hosts_over_https_and_ssh(
    url: str, kind: str, owner: str, name: str
) -> None:
    remote = parse_remote("origin", url)
    assert (remote.kind, remote.owner, remote.repository) == (kind, owner, name)
    assert "secret-token" not in remote.url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/acme/robots.git", "GitHub, GitLab or Bitbucket"),
        ("/srv/git/robots.git", "not a URL fleetconfig understands"),
        ("file:///srv/git/robots.git", "use an https or ssh remote"),
        ("https://github.com/acme", "does not name an owner/repository"),
        ("https://github.com/acme/tools/robots", "does not name an owner/repository"),
    ],
)
def test_unusable_remotes_are_refused(url: str, expected: str) -> None:
    with pytest.raises(GitError) as raised:
        parse_remote("origin", url)
    assert expected in raised.value.message


def test_credentials_never_leave_the_machine() -> None:
    assert (
        strip_credentials("https://x-access-token:ghp_abc@github.com/a/b.git")
        == "https://github.com/a/b.git"
    )
    assert strip_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"


def committed_repo(
    tmp_path: Path, remote: str | None = "git@gitlab.com:acme/robots.git"
) -> tuple[Path, Path]:
    root = make_repo(tmp_path / "repo", remote)
    schema = root / "schemas" / "motion.json"
    schema.parent.mkdir()
    schema.write_text("{}\n")
    commit_all(root, "First line\n\nBody of the message.")
    return root, schema


def test_reads_root_commit_message_and_remote(tmp_path: Path) -> None:
    root, schema = committed_repo(tmp_path)
    (root / "build.log").write_text("untracked files elsewhere do not matter\n")
    repository = read_repository(root / "schemas", [schema])
    assert repository.root == root.resolve()
    assert repository.sha == git(root, "rev-parse", "HEAD").strip()
    assert repository.message == "First line\n\nBody of the message."
    assert (repository.remote.name, repository.remote.kind, repository.remote.url) == (
        "origin",
        "gitlab",
        "git@gitlab.com:acme/robots.git",
    )


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        read_repository(tmp_path / "plain", [])


def test_no_commits_yet(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    with pytest.raises(GitError, match="no commits yet"):
        read_repository(root, [])


def test_no_remote(tmp_path: Path) -> None:
    root, schema = committed_repo(tmp_path, remote=None)
    with pytest.raises(GitError, match="no remote"):
        read_repository(root, [schema])


@pytest.mark.parametrize("staged", [False, True])
def test_a_dirty_tree_is_refused(tmp_path: Path, staged: bool) -> None:
    root, schema = committed_repo(tmp_path)
    schema.write_text('{"type": "object"}\n')
    if staged:
        git(root, "add", "-A")
    with pytest.raises(GitError) as raised:
        read_repository(root, [schema])
    assert "uncommitted changes (1 file)" in raised.value.message
    assert "schemas/motion.json" in raised.value.details


def test_an_uncommitted_or_ignored_schema_file_is_refused(tmp_path: Path) -> None:
    root, schema = committed_repo(tmp_path)
    (root / ".gitignore").write_text("ignored.json\n")
    commit_all(root, "ignore")
    new = root / "schemas" / "new.json"
    new.write_text("{}\n")
    ignored = root / "schemas" / "ignored.json"
    ignored.write_text("{}\n")
    with pytest.raises(GitError) as raised:
        read_repository(root, [schema, new, ignored])
    assert raised.value.details[:2] == ["schemas/new.json", "schemas/ignored.json"]


def test_a_schema_outside_the_repository_is_refused(tmp_path: Path) -> None:
    root, _ = committed_repo(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    with pytest.raises(GitError, match="outside the git repository"):
        read_repository(root, [outside])


def test_choosing_among_several_remotes(tmp_path: Path) -> None:
    root, schema = committed_repo(tmp_path, remote=None)
    git(root, "remote", "add", "upstream", "https://github.com/acme/robots.git")
    git(root, "remote", "add", "mirror", "git@bitbucket.org:acme/robots.git")
    with pytest.raises(GitError, match="Several remotes and none named origin"):
        read_repository(root, [schema])
    assert read_repository(root, [schema], remote="mirror").remote.kind == "bitbucket"
    with pytest.raises(GitError, match="No remote named 'nope'"):
        read_repository(root, [schema], remote="nope")
    git(root, "remote", "remove", "mirror")
    assert read_repository(root, [schema]).remote.name == "upstream"  # the only one
