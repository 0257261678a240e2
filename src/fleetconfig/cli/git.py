"""What ``release create`` needs to know about the git repository it runs in.

It reads (never changes) the repository through the ``git`` executable: the root, the HEAD
commit, whether the tree is clean, and the remote the commit can be found at. The remote's
host must be GitHub, GitLab or Bitbucket (https or ssh), because the server derives web links
from it; checking here gives a clear message before anything is created.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fleetconfig.cli.client import CliError

HOST_KINDS = {"github.com": "github", "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]+):(?P<path>[^/].*)$")


class GitError(CliError):
    """The repository is not in a state a release can be made from."""


@dataclass(frozen=True)
class Remote:
    name: str
    url: str  # as configured, minus any credentials
    kind: str  # github | gitlab | bitbucket
    owner: str
    repository: str


@dataclass(frozen=True)
class Repository:
    root: Path
    sha: str
    message: str
    remote: Remote


def run_git(directory: Path, *args: str) -> str:
    if shutil.which("git") is None:
        raise GitError("git is not installed (release create reads the commit from git)")
    try:
        completed = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git {' '.join(args)} failed: {error}") from None
    if completed.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} failed",
            details=[line for line in completed.stderr.strip().splitlines() if line][:5],
        )
    return completed.stdout


def host_kind(host: str) -> str | None:
    """github / gitlab / bitbucket for their sites and self-managed github.* / gitlab.* hosts."""
    host = host.lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    for prefix in ("ssh.", "altssh."):
        if host.startswith(prefix) and host[len(prefix) :] in HOST_KINDS:
            host = host[len(prefix) :]
    if host in HOST_KINDS:
        return HOST_KINDS[host]
    first = host.split(".")[0]
    if first in ("github", "gitlab") and host.count(".") >= 2:
        return first
    return None


def strip_credentials(url: str) -> str:
    """A CI job's https remote often embeds a token; it must never leave the machine."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc or parts.scheme.lower() not in ("http", "https"):
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def parse_remote(name: str, url: str) -> Remote:
    """Understand a remote URL (https, ssh://, or scp-like ``git@host:owner/repo.git``)."""
    clean = strip_credentials(url.strip())
    if "://" in clean:
        parts = urlsplit(clean)
        if parts.scheme.lower() not in ("https", "http", "ssh", "git+ssh", "ssh+git", "git"):
            raise GitError(
                f"Remote {name!r} ({clean}) uses {parts.scheme!r}: use an https or ssh remote"
            )
        host, path = parts.hostname or "", parts.path
    else:
        match = _SCP_LIKE.match(clean)
        if match is None:
            raise GitError(f"Remote {name!r} ({clean}) is not a URL fleetconfig understands")
        host, path = match.group("host"), match.group("path")
    kind = host_kind(host)
    if kind is None:
        raise GitError(
            f"Remote {name!r} is on {host or 'no host'}: "
            "releases need a GitHub, GitLab or Bitbucket remote",
            details=[f"The remote is {clean}"],
        )
    segments = [segment for segment in path.strip("/").removesuffix(".git").split("/") if segment]
    if len(segments) < 2 or (kind != "gitlab" and len(segments) != 2):
        raise GitError(f"Remote {name!r} ({clean}) does not name an owner/repository")
    return Remote(
        name=name, url=clean, kind=kind, owner="/".join(segments[:-1]), repository=segments[-1]
    )


def repository_root(directory: Path) -> Path:
    try:
        text = run_git(directory, "rev-parse", "--show-toplevel")
    except GitError:
        raise GitError(
            f"{directory} is not inside a git repository",
            details=[
                "release create records the commit the schemas come from; run it in a git checkout."
            ],
        ) from None
    return Path(text.strip()).resolve()


def choose_remote(root: Path, preferred: str | None) -> Remote:
    names = run_git(root, "remote").split()
    if not names:
        raise GitError(
            "The repository has no remote",
            details=[
                "Add one (git remote add origin https://github.com/OWNER/REPO.git): "
                "the release links to it."
            ],
        )
    if preferred is not None:
        if preferred not in names:
            raise GitError(f"No remote named {preferred!r} (remotes: {', '.join(names)})")
        name = preferred
    elif "origin" in names:
        name = "origin"
    elif len(names) == 1:
        name = names[0]
    else:
        raise GitError(
            f"Several remotes and none named origin ({', '.join(names)})",
            details=["Choose one with --remote NAME."],
        )
    url = run_git(root, "remote", "get-url", name).strip()
    return parse_remote(name, url)


def changed_paths(root: Path) -> list[str]:
    """Tracked files with staged or unstaged changes, relative to the root."""
    changed: list[str] = []
    text = run_git(root, "status", "--porcelain=v1", "-z", "--untracked-files=no")
    entries = text.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        changed.append(path)
        if "R" in status or "C" in status:
            index += 1  # a rename's or copy's source follows as its own entry
    return changed


def head_commit(root: Path) -> tuple[str, str]:
    try:
        sha = run_git(root, "rev-parse", "--verify", "HEAD^{commit}").strip()
    except GitError:
        raise GitError(
            "The repository has no commits yet", details=["Commit the schemas first."]
        ) from None
    message = run_git(root, "log", "-1", "--format=%B", sha).strip()
    return sha, message


def read_repository(
    directory: Path, schema_files: list[Path], remote: str | None = None
) -> Repository:
    """The repository ``schema_files`` are committed in, refusing anything a release can't use.

    A release records the commit its schemas come from, so the tree must be clean (no staged
    or unstaged changes to tracked files) and every schema file must be committed. Untracked
    files elsewhere (build output, say) do not matter.
    """
    root = repository_root(directory)
    changed = changed_paths(root)
    if changed:
        shown = changed[:10] + ([f"... and {len(changed) - 10} more"] if len(changed) > 10 else [])
        files = f"{len(changed)} file{'s' if len(changed) != 1 else ''}"
        raise GitError(
            f"The git tree has uncommitted changes ({files})",
            details=[*shown, "Commit or stash them: a release must match a commit exactly."],
        )
    # Tracked and unchanged means the file's content is the commit's; an untracked or
    # ignored schema file would make the release claim a commit that lacks it.
    tracked = set(run_git(root, "ls-files", "-z").split("\0"))
    not_committed = []
    for path in schema_files:
        try:
            relative = path.resolve().relative_to(root).as_posix()
        except ValueError:
            raise GitError(f"{path} is outside the git repository at {root}") from None
        if relative not in tracked:
            not_committed.append(relative)
    if not_committed:
        raise GitError(
            "Some schema files are not committed",
            details=[*not_committed, "Add and commit them: a release must match a commit exactly."],
        )
    chosen = choose_remote(root, remote)
    sha, message = head_commit(root)
    return Repository(root=root, sha=sha, message=message, remote=chosen)
