"""Git remotes: turn an ``origin`` (https or ssh, any of the shapes git accepts) into the
repository facts a git commit shows: host kind, owner, name and web links.

Pure functions, no I/O. The kind of host decides the URL layout of a commit page, so only
hosts whose layout is known are accepted: github.com, gitlab.com and bitbucket.org (and
their ssh-over-443 names), plus self-managed GitHub Enterprise and GitLab servers whose host
name starts with ``github.`` or ``gitlab.``, which use the same layout as the SaaS sites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

GITHUB = "github"
GITLAB = "gitlab"
BITBUCKET = "bitbucket"

# Host aliases of the SaaS sites, mapped to (kind, canonical web host).
_KNOWN_HOSTS: dict[str, tuple[str, str]] = {
    "github.com": (GITHUB, "github.com"),
    "www.github.com": (GITHUB, "github.com"),
    "ssh.github.com": (GITHUB, "github.com"),
    "gitlab.com": (GITLAB, "gitlab.com"),
    "www.gitlab.com": (GITLAB, "gitlab.com"),
    "altssh.gitlab.com": (GITLAB, "gitlab.com"),
    "bitbucket.org": (BITBUCKET, "bitbucket.org"),
    "www.bitbucket.org": (BITBUCKET, "bitbucket.org"),
    "altssh.bitbucket.org": (BITBUCKET, "bitbucket.org"),
}
_SCHEMES = frozenset({"https", "http", "ssh", "git", "git+ssh", "ssh+git"})
_URL_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# scp-like syntax: ``[user@]host:path`` (no scheme, and no slash before the colon).
_SCP_SHAPE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]+):(?P<path>.*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
MAX_PART_LENGTH = 255


class InvalidRemote(ValueError):
    """The origin is not a remote we can derive a repository from; the text says why."""


@dataclass(frozen=True)
class GitRemote:
    kind: str
    host: str
    owner: str
    name: str

    @property
    def repository_url(self) -> str:
        return f"https://{self.host}/{self.owner}/{self.name}"

    def commit_url(self, sha: str) -> str:
        if self.kind == GITLAB:
            return f"{self.repository_url}/-/commit/{sha}"
        if self.kind == BITBUCKET:
            return f"{self.repository_url}/commits/{sha}"
        return f"{self.repository_url}/commit/{sha}"


def _host_kind(host: str) -> tuple[str, str]:
    host = host.lower().rstrip(".")
    if host in _KNOWN_HOSTS:
        return _KNOWN_HOSTS[host]
    labels = host.split(".")
    if _HOST.match(host) and len(labels) >= 3 and labels[0] in (GITHUB, GITLAB):
        return labels[0], host
    raise InvalidRemote(
        f"unsupported git host {host!r}: expected GitHub, GitLab or Bitbucket "
        "(github.com, gitlab.com, bitbucket.org, or a self-managed github.* / gitlab.* host)"
    )


def _split_url(origin: str) -> tuple[str, str, str]:
    """Return ``(scheme, host, path)`` of a URL-shaped remote."""
    try:
        parts = urlsplit(origin)
        host = parts.hostname or ""
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as error:
        raise InvalidRemote(f"malformed URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidRemote(f"unsupported URL scheme {scheme!r}: use https or ssh")
    if parts.query or parts.fragment:
        raise InvalidRemote("a remote URL has no query or fragment")
    if not host:
        raise InvalidRemote("the URL has no host")
    # A web port matters for self-managed servers; an ssh port never appears in web links.
    if port is not None and scheme in ("https", "http") and port != 443:
        host = f"{host}:{port}"
    return scheme, host, parts.path


def parse_remote(origin: str) -> GitRemote:
    """Parse ``origin``; raise :class:`InvalidRemote` with a readable reason if it can't be."""
    text = origin.strip()
    if not text:
        raise InvalidRemote("the origin is empty")
    if any(char.isspace() for char in text):
        raise InvalidRemote("the origin contains whitespace")
    if _URL_SHAPE.match(text):
        _, host, path = _split_url(text)
    else:
        match = _SCP_SHAPE.match(text)
        if match is None:
            raise InvalidRemote(
                "not a git remote: expected https://host/owner/repo(.git), "
                "ssh://git@host/owner/repo(.git) or git@host:owner/repo(.git)"
            )
        host, path = match.group("host"), match.group("path")

    bare_host, _, web_port = host.partition(":")
    kind, web_host = _host_kind(bare_host)
    if web_port:
        web_host = f"{web_host}:{web_port}"

    trimmed = path.strip("/")
    if trimmed.endswith(".git"):
        trimmed = trimmed[: -len(".git")]
    segments = trimmed.split("/") if trimmed else []
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise InvalidRemote(f"invalid repository path segment {segment!r}")
        if len(segment) > MAX_PART_LENGTH:
            raise InvalidRemote(f"repository path segment longer than {MAX_PART_LENGTH} characters")
    # GitLab nests projects in groups and subgroups; GitHub and Bitbucket are owner/repo.
    if kind == GITLAB:
        if len(segments) < 2:
            raise InvalidRemote("expected a GitLab path of the form group[/subgroup...]/project")
    elif len(segments) != 2:
        raise InvalidRemote("expected a repository path of the form owner/repo")
    owner, name = "/".join(segments[:-1]), segments[-1]
    if len(owner) > MAX_PART_LENGTH:
        raise InvalidRemote(f"repository owner longer than {MAX_PART_LENGTH} characters")
    return GitRemote(kind=kind, host=web_host, owner=owner, name=name)


def without_credentials(origin: str) -> str:
    """``origin`` with any user name and password removed from a URL-shaped remote.

    A CI job's origin often embeds a token (``https://x-access-token:ghp_...@github.com/...``):
    it must not be stored.
    """
    text = origin.strip()
    if not _URL_SHAPE.match(text):
        return text
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    netloc = parts.netloc.rsplit("@", 1)[1]
    # ssh user names (``git@``) are not secrets and are part of how the remote is reached.
    if (
        parts.scheme.lower() in ("ssh", "git+ssh", "ssh+git")
        and ":" not in parts.netloc.rsplit("@", 1)[0]
    ):
        return text
    return parts._replace(netloc=netloc).geturl()
