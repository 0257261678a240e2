"""The ``fleetconfig-agent`` command: activate, provision, reprovision, run (the daemon),
status, version.

Every command takes ``--state-dir``, ``--root`` and ``--socket`` (or their
``FLEETCONFIG_AGENT_*`` variables), so several agents can run side by side without root;
other settings come from ``agent.toml`` in the state directory (see
:mod:`fleetconfig.agent.settings`). Exit codes: 0 done, 1 the server refused or the agent
failed, 2 a usage or local problem (not activated, bad setting), 3 the server is unreachable.

``run`` with nothing but those three options (the daemon's usual command line, as in the
systemd unit) starts the daemon without typer's parameter handling: typer coerces every
parameter through pydantic, which the daemon would otherwise carry in memory for its whole
life (about 12 MB of its resident memory). Anything else (``--help``, an unknown or
malformed option) goes through typer as usual.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from fleetconfig.agent.server_link import Binding
    from fleetconfig.agent.settings import AgentSettings

from fleetconfig import __version__


class _AgentCli(typer.Typer):
    """The ``fleetconfig-agent`` command, with a lean way in for the daemon (see above)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        options = None if args or kwargs else _plain_run_options(sys.argv[1:])
        if options is None:
            return super().__call__(*args, **kwargs)
        try:
            _run_daemon(**options)
        except typer.Exit as done:
            sys.exit(done.exit_code)
        return None


app = _AgentCli(
    name="fleetconfig-agent",
    help="The fleetconfig agent: keeps a robot's config files in line with the server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Defaults are written "(default: ...)" in the help: typer renders help with rich, which
# reads "[default: ...]" as markup and drops it. show_default=False because the real default
# is decided by the settings (agent.toml, variables), not by these options.
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="FLEETCONFIG_AGENT_STATE_DIR",
        help="Keys, identity and local state (default: /var/lib/fleetconfig).",
        show_default=False,
    ),
]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        envvar="FLEETCONFIG_AGENT_ROOT",
        help="Write every device path under this directory (default: /).",
        show_default=False,
    ),
]
SocketOption = Annotated[
    Path | None,
    typer.Option(
        "--socket",
        envvar="FLEETCONFIG_AGENT_SOCKET",
        help="The on-device API's Unix socket (default: /run/fleetconfig/agent.sock).",
        show_default=False,
    ),
]


_RUN_OPTIONS = {
    "--state-dir": ("state_dir", "FLEETCONFIG_AGENT_STATE_DIR"),
    "--root": ("root", "FLEETCONFIG_AGENT_ROOT"),
    "--socket": ("socket", "FLEETCONFIG_AGENT_SOCKET"),
}


def _plain_run_options(args: list[str]) -> dict[str, Path | None] | None:
    """``run``'s options, as typer would give them, if ``args`` are ``run`` and only those.

    ``None`` when anything else is there: typer then parses (and explains) it.
    """
    if not args or args[0] != "run":
        return None
    # As typer does: an option not given comes from its variable, when that is set.
    values = {key: os.environ.get(env) or None for key, env in _RUN_OPTIONS.values()}
    rest = args[1:]
    while rest:
        name, equals, value = rest[0].partition("=")
        if not equals:
            if len(rest) < 2:
                return None
            value = rest[1]
        if name not in _RUN_OPTIONS or not value or value.startswith("-"):
            return None
        values[_RUN_OPTIONS[name][0]] = value
        rest = rest[1:] if equals else rest[2:]
    return {key: Path(value) if value else None for key, value in values.items()}


def _fail(message: str, code: int) -> typer.Exit:
    print(f"fleetconfig-agent: {message}", file=sys.stderr)
    return typer.Exit(code)


def _settings(state_dir: Path | None, root: Path | None, socket: Path | None) -> Any:
    from fleetconfig.agent.settings import SettingsError, load_settings

    try:
        return load_settings(
            {
                "state_dir": state_dir.absolute() if state_dir else None,
                "root": root.absolute() if root else None,
                "socket": socket.absolute() if socket else None,
            }
        )
    except SettingsError as error:
        raise _fail(str(error), 2) from None


@app.command()
def activate(
    server: Annotated[
        str, typer.Option("--server", help="The server's URL, such as https://fleet.example.com.")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="FLEETCONFIG_ACTIVATION_TOKEN",
            help="The device's activation token (from the dashboard or the Platform API).",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Rename the device at activation.")
    ] = None,
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
) -> None:
    """Make this machine's key pair and bind it to a device with a one-time token."""

    settings = _settings(state_dir, root, socket)
    _bind_this_machine(settings, server, token, name, "activation", "Activated", "activate")
    print(f"Start the agent with: {run_command(state_dir, root, socket)}")


def _bind_this_machine(
    settings: AgentSettings,
    server: str,
    token: str,
    name: str | None,
    what: str,
    done: str,
    binding: Binding,
) -> None:
    """Activate, provision or reprovision: bind this machine's new key to a device with
    ``token``, or exit with why not (2: bad input or state directory, 3: no server, 1:
    refused)."""
    from fleetconfig.agent.activation import activate as run_activation
    from fleetconfig.agent.server_link import NetworkError, ServerError

    try:
        activated = asyncio.run(run_activation(settings, server, token, name, binding=binding))
    except ValueError as error:
        raise _fail(str(error), 2) from None
    except NetworkError as error:
        raise _fail(f"cannot reach the server: {error}", 3) from None
    except ServerError as error:
        raise _fail(f"{what} refused: {error}", 1) from None
    except OSError as error:
        raise _fail(f"cannot write to {settings.state_dir}: {error}", 2) from None
    shown = activated.device.get("name", "") or name or ""
    print(f"{done} as device {shown} ({activated.identity.device_id}).")
    print(f"State directory: {settings.state_dir}")
    if activated.replaced_device_id:
        print(f"(This agent was device {activated.replaced_device_id} before; its state is reset.)")


def run_command(state_dir: Path | None, root: Path | None, socket: Path | None) -> str:
    """``fleetconfig-agent run`` with the options this command was given (as absolute paths),
    so that it finds the state it was activated into."""
    import shlex

    words = ["fleetconfig-agent", "run"]
    for flag, value in (("--state-dir", state_dir), ("--root", root), ("--socket", socket)):
        if value is not None:
            words += [flag, str(value.absolute())]
    return shlex.join(words)


@app.command()
def provision(
    server: Annotated[
        str, typer.Option("--server", help="The server's URL, such as https://fleet.example.com.")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="FLEETCONFIG_PROVISIONING_TOKEN",
            help="A provisioning token (POST /provisioning_tokens; 5 minutes, one use).",
        ),
    ],
    name: Annotated[
        str,
        typer.Option("--name", help="The device's name: created if new, else activated."),
    ],
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
) -> None:
    """Provision this machine as the device NAME with a provisioning token (no device has to
    exist first). A machine already provisioned is left as it is."""
    from fleetconfig.agent.keys import Identity, IdentityError

    settings = _settings(state_dir, root, socket)
    try:
        existing = Identity.load(settings.state_dir)
    except IdentityError:
        existing = None
    if existing is not None:
        print(f"Already provisioned as device {existing.device_id}; nothing to do.")
        return
    _bind_this_machine(settings, server, token, name, "provisioning", "Provisioned", "provision")
    print(f"Start the agent with: {run_command(state_dir, root, socket)}")


@app.command()
def reprovision(
    server: Annotated[
        str, typer.Option("--server", help="The server's URL, such as https://fleet.example.com.")
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="FLEETCONFIG_PROVISIONING_TOKEN",
            help="A provisioning token issued for the device "
            "(`fleetconfig devices provisioning-token DEVICE`; 5 minutes, one use).",
        ),
    ],
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
) -> None:
    """Move an existing device to this machine (a replaced robot, a reinstalled disk, a new
    key): a new key pair replaces the device's old one, whose sessions end. The device keeps
    its name, group and deployments; this agent writes its current deployment on its first
    sync. Stop the agent (if one runs here) before, and start it after."""

    settings = _settings(state_dir, root, socket)
    _bind_this_machine(
        settings, server, token, None, "reprovisioning", "Reprovisioned", "reprovision"
    )
    print(f"Start the agent with: {run_command(state_dir, root, socket)}")


@app.command()
def run(
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
) -> None:
    """Run the agent daemon until SIGTERM or Ctrl-C."""
    _run_daemon(state_dir, root, socket)


def _run_daemon(state_dir: Path | None, root: Path | None, socket: Path | None) -> None:
    from fleetconfig import lifeline

    lifeline.hold_from_environment()  # started by ``fleetconfig demo``: end with it
    if "httpx" not in sys.modules:
        # httpx imports its own command-line client (rich, pygments: about 6 MB resident)
        # whenever those are installed, as they are here for typer; the daemon never uses
        # it, and httpx falls back to a stub ``httpx.main`` when it cannot be imported.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from fleetconfig.agent import logs
    from fleetconfig.agent.daemon import AgentDaemon
    from fleetconfig.agent.keys import IdentityError
    from fleetconfig.agent.unix_socket import SocketInUse

    settings = _settings(state_dir, root, socket)
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(AgentDaemon(settings).run())
    except IdentityError as error:
        raise _fail(str(error), 2) from None
    except SocketInUse as error:
        raise _fail(f"{error} (is another agent running?)", 1) from None
    except (OSError, ValueError) as error:
        raise _fail(str(error), 1) from None
    except RuntimeError as error:
        raise _fail(str(error), 1) from None


@app.command()
def status(
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show this agent's identity, link and deployments (from its local state)."""
    from fleetconfig.agent.clock import isoformat
    from fleetconfig.agent.keys import Identity, IdentityError
    from fleetconfig.agent.store import Store

    settings = _settings(state_dir, root, socket)
    try:
        identity = Identity.load(settings.state_dir)
    except IdentityError as error:
        raise _fail(str(error), 2) from None

    def when(value: Any) -> str | None:
        return isoformat(value) if value is not None else None

    # Read only: ``start_run`` is for the daemon, whose state this must not disturb.
    with Store.open(settings.state_dir) as store:
        facts = store.device_facts()
        current = store.current_deployment()
        unfinished = store.unfinished_deployments()
        outbox = store.pending_reports(limit=1000)
        device = store.get_device() or {}
    pending = [
        {"id": record.id, "status": record.status, "reason": record.error_reason}
        for record in unfinished
        if record.id != (current.id if current else None)
    ]
    payload: dict[str, Any] = {
        "device_id": identity.device_id,
        "device_name": device.get("name"),
        "server_url": settings.server_url or identity.server_url,
        "online": facts.online,
        "last_synced_at": when(facts.last_synced_at),
        "last_attempted_sync_at": when(facts.last_attempted_sync_at),
        "current_deployment": None
        if current is None
        else {"id": current.id, "release_id": current.release_id, "status": current.status},
        "pending_deployments": pending,
        "unsent_reports": len(outbox),
        "state_dir": str(settings.state_dir),
        "root": str(settings.root),
        "socket": str(settings.socket),
    }
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    print(f"device      {payload['device_name'] or ''} ({identity.device_id})")
    print(f"server      {payload['server_url']}")
    print(f"link        {'online' if facts.online else 'offline'}")
    print(f"last sync   {payload['last_synced_at'] or 'never'}")
    if current is not None:
        print(f"current     {current.id} ({current.status})")
    else:
        print("current     none")
    for item in pending:
        reason = f": {item['reason']}" if item["reason"] else ""
        print(f"pending     {item['id']} ({item['status']}){reason}")
    print(f"unsent      {len(outbox)} status report(s)")


@app.command()
def version(
    state_dir: StateDirOption = None,
    root: RootOption = None,
    socket: SocketOption = None,
) -> None:
    """Print the agent's version."""
    # The common options are accepted (and ignored) so every command takes them.
    print(__version__)


if __name__ == "__main__":
    app()
