"""The developer commands' link to a server: credentials, the official client, errors, paging.

Credentials come from ``FLEETCONFIG_SERVER`` / ``FLEETCONFIG_API_KEY`` (each wins over the
file, so CI needs no login) or from the file ``fleetconfig login`` writes. The HTTP client is
the official ``miru_platform_sdk``; it is imported only when a command talks to a server, so
``fleetconfig serve`` and the admin commands work without it.

Exit codes mean the same thing for every command:

====  ==========================================================================
0     done
1     the server refused the request (4xx) or failed (5xx); or some of a bulk
      operation failed; or a watched deployment failed
2     usage or local problem: bad options, not logged in, dirty git tree, a
      schema file without annotations, ...
3     the server could not be reached (connection refused, DNS, timeout)
4     ``deployments watch`` gave up: the timeout passed before every
      deployment reached its target
====  ==========================================================================
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from fleetconfig import __version__
from fleetconfig.cli import output

if TYPE_CHECKING:
    from miru_platform_sdk import Miru
    from miru_platform_sdk.types import Device, Release

SERVER_ENV = "FLEETCONFIG_SERVER"
API_KEY_ENV = "FLEETCONFIG_API_KEY"
CREDENTIALS_FILE = "credentials.json"
API_PREFIX = "/beta"
PAGE_SIZE = 100
# The API version of every request the CLI sends (API_VERSIONS.md decision 9): slots,
# groups and provisioning tokens are everglades'. Set on the client, whatever release of the
# official SDK is installed, so ``MIRU_API_VERSION`` in the user's shell cannot change it.
EVERGLADES = "2026-08-17.everglades"
TETONS = "2026-03-09.tetons"


# Shown under ``fleetconfig --help``.
EPILOG = (
    "Exit status: 0 done · 1 refused by the server, or part of a bulk action failed · "
    "2 usage or local problem · 3 server unreachable · 4 watch timed out.  \n"
    f"Server and key: `fleetconfig login`, or {SERVER_ENV} and {API_KEY_ENV} (they win over login)."
)


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    UNREACHABLE = 3
    TIMEOUT = 4


@dataclass
class CliError(Exception):
    """A failure to report in one line (plus optional detail lines) and an exit code."""

    message: str
    exit_code: ExitCode = ExitCode.USAGE
    details: list[str] = field(default_factory=list)
    # For --json: the machine-readable form of the error.
    data: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


# --- credentials -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    server: str
    api_key: str
    # Where each came from, for ``whoami``: "environment" or the file's path.
    server_source: str
    api_key_source: str


def config_dir() -> Path:
    import platformdirs

    return platformdirs.user_config_path("fleetconfig")


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def normalise_server(url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash or the API's ``/beta``."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            f"{url!r} is not a server URL",
            details=[
                "Give the scheme and host, such as http://localhost:8080 or https://fleet.example.com."
            ],
        )
    for suffix in (API_PREFIX, "/v1"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text


def read_credentials_file() -> dict[str, str]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CliError(
            f"Cannot read {path}: {error}", details=["Run `fleetconfig login` again."]
        ) from None
    if not isinstance(data, dict):
        raise CliError(
            f"{path} is not a fleetconfig credentials file",
            details=["Run `fleetconfig login` again."],
        )
    return {key: value for key, value in data.items() if isinstance(value, str)}


def write_credentials_file(server: str, api_key: str) -> Path:
    """Write the credentials readable by the user alone.

    The file is created with mode 0600 (never briefly wider) under a 0700 directory, and
    replaced atomically so that a crash leaves the old file or the new one.
    """
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The umask can only narrow the mode; make it exactly 0600 whatever the umask is.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"server": server, "api_key": api_key}, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def load_credentials() -> Credentials:
    stored = read_credentials_file()
    path = str(credentials_path())
    server, server_source = os.environ.get(SERVER_ENV, "").strip(), "environment"
    if not server:
        server, server_source = stored.get("server", ""), path
    api_key, api_key_source = os.environ.get(API_KEY_ENV, "").strip(), "environment"
    if not api_key:
        api_key, api_key_source = stored.get("api_key", ""), path
    if not server or not api_key:
        missing = " and ".join(
            name for name, value in ((SERVER_ENV, server), (API_KEY_ENV, api_key)) if not value
        )
        raise CliError(
            "Not logged in",
            details=[f"Run `fleetconfig login`, or set {missing} (CI needs no login)."],
        )
    return Credentials(normalise_server(server), api_key, server_source, api_key_source)


# --- the official client -----------------------------------------------------------------


def make_client(credentials: Credentials | None = None) -> Miru:
    try:
        from miru_platform_sdk import Miru
    except ImportError:  # pragma: no cover - depends on how fleetconfig was installed
        raise CliError(
            "The Platform API client is not installed",
            details=["Install it with: pip install 'fleetconfig[cli]'"],
        ) from None
    credentials = credentials or load_credentials()
    return Miru(
        api_key=credentials.api_key,
        base_url=credentials.server + API_PREFIX,
        miru_version=EVERGLADES,
        default_headers={"User-Agent": f"fleetconfig-cli/{__version__}"},
        max_retries=2,
        timeout=30.0,
        # Every answer is checked against the client's models (an answer that does not fit
        # is an error, not a silently half-read dict): the CLI renders typed objects only.
        _strict_response_validation=True,
    )


def call(
    client: Miru,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    version: str = EVERGLADES,
) -> Any:
    """One request as JSON in and out, through the official client (its key, retries and
    errors), for what the installed SDK release has no typed method for: fleetconfig's
    extensions, and everglades operations and fields that older SDK releases lack."""
    options: Any = {"headers": {"Miru-Version": version}}
    if params:
        options["params"] = {key: value for key, value in params.items() if value is not None}
    if method == "GET":
        return client.get(path, cast_to=object, options=options)
    if method == "PATCH":
        return client.patch(path, cast_to=object, body=body or {}, options=options)
    return client.post(path, cast_to=object, body=body or {}, options=options)


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp of a raw answer, as the typed models give it."""
    return datetime.fromisoformat(value) if value else None


def error_envelope(body: object) -> dict[str, Any]:
    """The server's ``{"code", "message", "params"}``, or something shaped like it."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return {
                "code": str(inner.get("code", "unknown")),
                "message": str(inner.get("message", "")),
                "params": inner.get("params") if isinstance(inner.get("params"), dict) else {},
            }
    return {"code": "unknown", "message": str(body or ""), "params": {}}


def describe_params(params: dict[str, Any], skip: tuple[str, ...] = ("errors",)) -> str:
    shown = []
    for key, value in params.items():
        if key in skip:
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        shown.append(f"{key}={text}")
    return "; ".join(shown)


def api_error(error: Exception) -> CliError:
    """Turn an exception of the official client into a one-line message and an exit code."""
    import miru_platform_sdk as sdk

    if isinstance(error, sdk.APIStatusError):
        envelope = error_envelope(error.body)
        params: dict[str, Any] = envelope["params"]
        status = error.status_code
        label = envelope["code"]
        if params.get("reason"):
            label += f": {params['reason']}"
        message = envelope["message"] or f"HTTP {status}"
        details: list[str] = []
        extra = describe_params(params, skip=("errors", "reason", "missing_scopes"))
        if extra:
            details.append(extra)
        for item in params.get("errors") or []:
            if isinstance(item, dict):
                details.append(f"{item.get('path') or '/'}: {item.get('message', '')}")
        if status == 401:
            details.append(f"Check {API_KEY_ENV}, or run `fleetconfig login` with a valid key.")
        elif status == 403 and params.get("missing_scopes"):
            groups = [group for group in params["missing_scopes"] if isinstance(group, list)]
            flags = " ".join(f"--scope {group[0]}" for group in groups if group)
            details.append(
                "Ask an administrator for a key holding all of them, "
                f"such as `fleetconfig apikey create --name NAME {flags}`."
            )
        elif status == 403 and params.get("required_scopes"):
            details.append("Ask an administrator for a key holding one of these scopes.")
        elif status >= 500:
            details.append(
                "This is a server bug; the request id above helps to find it in its log."
            )
        return CliError(
            f"{message} ({status} {label})",
            ExitCode.REFUSED,
            details,
            data={"status": status, **envelope},
        )
    if isinstance(error, sdk.APIConnectionError):
        url = (
            str(error.request.url) if getattr(error, "request", None) is not None else "the server"
        )
        reason = "timed out" if isinstance(error, sdk.APITimeoutError) else "connection failed"
        cause = f": {error.__cause__}" if error.__cause__ else ""
        return CliError(
            f"Cannot reach the server ({reason}{cause})",
            ExitCode.UNREACHABLE,
            [f"Tried {url}. Is the server running, and is the URL right?"],
            data={"code": "unreachable", "message": reason, "params": {"url": url}},
        )
    if isinstance(error, sdk.APIResponseValidationError):
        return CliError(f"The server's response was not understood: {error}", ExitCode.REFUSED)
    return CliError(str(error), ExitCode.REFUSED)


def is_api_error(error: BaseException) -> bool:
    try:
        import miru_platform_sdk as sdk
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, sdk.APIError)


def report(error: CliError, as_json: bool) -> None:
    if as_json:
        payload = {"error": {"message": error.message, **error.data, "details": error.details}}
        sys.stderr.write(json.dumps(payload) + "\n")
        return
    console = output.stderr()
    console.print(f"[bold red]Error:[/bold red] {escape(error.message)}")
    for line in error.details:
        console.print(f"  {escape(line)}")


P = ParamSpec("P")
R = TypeVar("R")


def command(function: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: report failures in one place, with the exit codes above."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return function(*args, **kwargs)
        except CliError as error:
            report(error, as_json)
            raise typer.Exit(int(error.exit_code)) from None
        except Exception as error:
            if not is_api_error(error):
                raise
            mapped = api_error(error)
            report(mapped, as_json)
            raise typer.Exit(int(mapped.exit_code)) from None

    return wrapper


# --- reading many ------------------------------------------------------------------------


def iterate(list_page: Callable[..., Any], **filters: Any) -> Iterator[Any]:
    """Every item of a list operation, page by page, in a stable order."""
    offset = 0
    while True:
        page = list_page(limit=PAGE_SIZE, offset=offset, order_by=["id:asc"], **filters)
        yield from page.data
        if not page.has_more or not page.data:
            return
        offset += len(page.data)


def chunks(items: list[str], size: int = 50) -> Iterator[list[str]]:
    """Id filters go in the query string; keep each request's URL a sensible length."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- names people use --------------------------------------------------------------------


def resolve_device(client: Miru, reference: str) -> Device:
    """A device by id (``dvc_...``) or by its unique name."""
    if reference.startswith("dvc_"):
        return client.devices.retrieve(reference)
    found = client.devices.list(name=[reference], limit=1).data
    if not found:
        raise CliError(
            f"No device named {reference!r}", ExitCode.REFUSED, data={"code": "not_found"}
        )
    return found[0]


def resolve_release(client: Miru, reference: str, expand_schemas: bool = False) -> Release:
    """A release by id (``rls_...``) or by its version."""
    options: dict[str, Any] = {"expand": ["config_schemas"]} if expand_schemas else {}
    if reference.startswith("rls_"):
        return client.releases.retrieve(reference, **options)
    found = client.releases.list(version=[reference], limit=1, **options).data
    if not found:
        raise CliError(
            f"No release with version {reference!r}", ExitCode.REFUSED, data={"code": "not_found"}
        )
    return found[0]
