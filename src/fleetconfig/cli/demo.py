"""``fleetconfig demo``: a server, a local agent and a first deployment on disk, in one command.

It starts ``fleetconfig serve`` (SQLite in the demo's data directory) and
``fleetconfig-agent run`` (``--root`` and socket in the same directory) as child processes,
creates a config type, schema, release and device through the official Platform API client
(on API version everglades, as the CLI), provisions the agent with a provisioning token,
deploys a config and waits for the file to land. Then it keeps both
running, prints how to deploy more (official client, CLI, device SDK) and reports every
change of the file, until Ctrl-C stops both.

Run twice on the same data directory, it reuses what the first run made (the same config
type, schema, release, device and agent identity) and deploys a new config.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import httpx
import platformdirs
import typer
from rich.console import Console
from rich.markup import escape

from fleetconfig import lifeline

if TYPE_CHECKING:
    from miru_platform_sdk import Miru
    from miru_platform_sdk.types import InstanceSlotParam

# soft_wrap: commands stay on one line, so they can be copied.
console = Console(highlight=False, soft_wrap=True)

CONFIG_TYPE_SLUG = "motion"
RELEASE_VERSION = "v1.0.0"
DEVICE_NAME = "demo-robot"
DEVICE_PATH = f"/srv/miru/configs/{CONFIG_TYPE_SLUG}.json"
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "max_speed": {"type": "number", "minimum": 0, "maximum": 5},
        "mode": {"enum": ["indoor", "outdoor"]},
        "greeting": {"type": "string"},
    },
    "required": ["max_speed", "mode"],
}
# A Unix socket path holds at most 107 bytes.
MAX_SOCKET_PATH = 107


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("fleetconfig", appauthor=False)) / "demo"


def server_data_env(data_dir: Path) -> str:
    """What ``fleetconfig apikey``/``db`` need to act on the demo's server (its data directory
    is not the one they use by default, so that the demo never touches a real server's)."""
    return f"FLEETCONFIG_DATA_DIR={data_dir / 'server'}"


class _Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) to the demo: stop like Ctrl-C, children included."""


def _stop_on_termination() -> None:
    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


class DemoError(Exception):
    pass


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    lifeline: int  # the write end of the child's lifeline: closing it stops the child

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> int | None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.lifeline >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lifeline)
            self.lifeline = -1
        self.log.close()
        return self.process.returncode


def _spawn(name: str, args: list[str], env: dict[str, str], log_path: Path) -> Child:
    log = log_path.open("ab")
    # The child ends when the demo does, even if the demo is SIGKILLed (see lifeline).
    held, kept = lifeline.new()
    try:
        process = subprocess.Popen(
            [sys.executable, *args],
            env={**env, lifeline.ENV: str(held)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(held,),
            # Its own process group: Ctrl-C reaches only the demo, which stops the
            # children in order (agent first, then server).
            start_new_session=True,
        )
    except BaseException:
        os.close(kept)
        raise
    finally:
        os.close(held)
    return Child(name, process, log_path, log, kept)


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_server(child: Child, base_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise DemoError(f"the server exited early:\n{child.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise DemoError(f"the server did not start within {timeout:.0f} s:\n{child.tail()}")


def _socket_path(agent_dir: Path) -> Path:
    path = agent_dir / "agent.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    # The data directory is too deep for a socket path: use a short private directory.
    short = Path("/tmp") / f"fleetconfig-demo-{os.getuid()}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "agent.sock"


@dataclass
class Fleet:
    schema_id: str
    release_id: str
    device_id: str


def _prepare_fleet(client: Miru) -> Fleet:
    """Config type, schema, release and device: found if an earlier run made them."""
    types = client.config_types.list(slug=[CONFIG_TYPE_SLUG]).data
    if not types:
        client.config_types.create(name="Motion", slug=CONFIG_TYPE_SLUG)
    # Creating a schema identical to an existing one returns that one. The one slot is the
    # one a tetons instance_filepath made, so a data directory of an earlier demo is reused.
    slot: InstanceSlotParam = {
        "key": "default",
        "name": "Default",
        "filepath": DEVICE_PATH,
        "required": True,
    }
    schema = client.config_schemas.create(
        config_type_ref={"slug": CONFIG_TYPE_SLUG},
        documents=[{"name": "motion.schema.json", "data": json.dumps(SCHEMA, indent=2)}],
        format="json",
        language="jsonschema",
        instance_format="json",
        instance_slots=[slot],
    )
    releases = client.releases.list(version=[RELEASE_VERSION]).data
    release = releases[0] if releases else None
    if release is None:
        release = client.releases.create(version=RELEASE_VERSION, config_schema_ids=[schema.id])
    devices = client.devices.list(name=[DEVICE_NAME]).data
    device = devices[0] if devices else client.devices.create(name=DEVICE_NAME)
    return Fleet(schema.id, release.id, device.id)


def _provisioning(client: Miru, fleet: Fleet, identity: dict[str, Any]) -> tuple[list[str], str]:
    """The agent command that binds this agent to the demo device, and its token.

    A fresh agent and a device never activated: ``provision --name`` with a workspace
    provisioning token, as a new robot is brought up. Otherwise (the agent belongs to another
    server or device, say after the data directory moved): ``reprovision`` with a token
    issued for the device, as a replaced robot computer is.
    """
    from fleetconfig.cli.client import call

    device = client.devices.retrieve(fleet.device_id)
    if not identity and device.status == "inactive":
        return ["provision", "--name", device.name], client.provisioning_tokens.create().token
    issued = call(client, "POST", f"/devices/{fleet.device_id}/provisioning_token")
    return ["reprovision"], str(issued["token"])


def _identity(agent_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((agent_dir / "identity.json").read_text())
        if isinstance(data, dict):
            return data
    return {}


def _deploy(
    client: Miru, fleet: Fleet, values: dict[str, Any], description: str
) -> tuple[str, str]:
    """Create a config instance and deploy it; returns (deployment id, the file's bytes)."""
    import miru_platform_sdk

    data = json.dumps(values, indent=2) + "\n"
    instance = client.config_instances.create(
        config_schema_id=fleet.schema_id, content={"format": "json", "data": data}
    )
    common: dict[str, Any] = {
        "description": description,
        "device_id": fleet.device_id,
        "release_id": fleet.release_id,
        "config_instance_ids": [instance.id],
    }
    try:
        deployment = client.deployments.create(target_status="deployed", **common)
    except miru_platform_sdk.ConflictError:
        # The device runs another release (someone deployed one): stage, then deploy.
        staged = client.deployments.create(target_status="staged", **common)
        deployment = client.deployments.deploy(staged.id)
    return deployment.id, data


def _wait_for_file(path: Path, expected: str, agent: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not agent.alive():
            raise DemoError(f"the agent exited:\n{agent.tail()}")
        with contextlib.suppress(OSError):
            if path.read_text() == expected:
                return
        time.sleep(0.01)
    raise DemoError(f"the file did not land within {timeout:.0f} s; agent log:\n{agent.tail()}")


def _wait_for_online(client: Miru, device_id: str, agent: Child, timeout: float) -> None:
    """Until the agent holds its push connection (so the deploy shows push, not start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.alive():
        if client.devices.retrieve(device_id).status == "online":
            return
        time.sleep(0.1)


def _wait_for_status(client: Miru, deployment_id: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = client.deployments.retrieve(deployment_id).status
        if status in ("deployed", "failed"):
            return status
        time.sleep(0.1)
    return status


def _instructions(
    base_url: str, api_key: str, fleet: Fleet, host_path: Path, socket_path: Path, data_dir: Path
) -> None:
    console.print()
    console.rule("[bold]Deploy more[/bold]")
    console.print("[bold]With the official Python client[/bold] (miru-platform-sdk):")
    # The base URL is given in code, not as MIRU_BASE_URL: the device SDK reads that
    # variable too, and would then miss the agent in the same shell.
    console.print(f"  export MIRU_API_KEY={api_key} MIRU_API_VERSION=2026-08-17.everglades")
    snippet = (
        "  python - <<'EOF'\n"
        "  from miru_platform_sdk import Miru\n"
        f'  client = Miru(base_url="{base_url}/beta")\n'
        "  instance = client.config_instances.create(\n"
        f'      config_schema_id="{fleet.schema_id}",\n'
        '      content={"format": "json", "data": \'{"max_speed": 2.5, "mode": "outdoor"}\'},\n'
        "  )\n"
        "  client.deployments.create(\n"
        '      target_status="deployed", description="faster",\n'
        f'      device_id="{fleet.device_id}", release_id="{fleet.release_id}",\n'
        "      config_instance_ids=[instance.id],\n"
        "  )\n"
        "  EOF"
    )
    console.print(escape(snippet))
    console.print()
    console.print("[bold]With the fleetconfig CLI[/bold]:")
    console.print(f"  export FLEETCONFIG_SERVER={base_url} FLEETCONFIG_API_KEY={api_key}")
    console.print('  echo \'{"max_speed": 0.5, "mode": "indoor"}\' > motion.json')
    console.print(
        f"  fleetconfig instances create --release {RELEASE_VERSION} --type {CONFIG_TYPE_SLUG}"
        " --file motion.json"
    )
    console.print(
        f"  fleetconfig deploy --release {RELEASE_VERSION} --device {DEVICE_NAME}"
        " --instance <the new instance id>"
    )
    console.print()
    console.print("[bold]On the robot[/bold] (miru-device-sdk, or curl on the socket):")
    console.print(f"  export MIRU_AGENT_SOCKET={socket_path}")
    console.print(f"  curl --unix-socket {socket_path} http://localhost/v0.2/deployments/current")
    console.print()
    console.print("[bold]API keys for this demo's server[/bold]:")
    console.print(f"  export {server_data_env(data_dir)}")
    console.print("  fleetconfig apikey create --name ci --scope all")
    console.print()
    console.print(f"The config file:   {host_path}")
    console.print(f"Dashboard and API: {base_url}/   (docs at {base_url}/docs)")
    console.print(f"Logs:              {data_dir / 'server.log'}, {data_dir / 'agent.log'}")
    console.print()
    console.print("Watching the file for changes. [bold]Ctrl-C[/bold] stops the server and agent.")


def _watch(path: Path, children: list[Child], last: str) -> None:
    """Report each new content of the file until Ctrl-C or a child dies."""
    while True:
        for child in children:
            if not child.alive():
                raise DemoError(f"the {child.name} exited:\n{child.tail()}")
        try:
            current = path.read_text()
        except OSError:
            current = ""
        if current != last:
            stamp = time.strftime("%H:%M:%S")
            if current:
                console.print(f"[green]{stamp} {path.name} changed:[/green]")
                console.print(escape(current.rstrip()))
            else:
                console.print(f"[yellow]{stamp} {path.name} was removed[/yellow]")
            last = current
        time.sleep(0.2)


def demo(
    port: Annotated[int, typer.Option(help="Port of the demo server.")] = 8080,
    host: Annotated[str, typer.Option(help="Address the demo server listens on.")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the demo keeps its server database, agent state and files "
            "(default: the per-user data directory, …/fleetconfig/demo).",
            show_default=False,
        ),
    ] = None,
    key_bits: Annotated[
        int, typer.Option(help="RSA key size of the demo agent's device key.")
    ] = 4096,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Stop after the first deployment lands (for scripts and tests)."
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Once the deployment landed, print what was made as JSON on standard output "
            "(progress goes to standard error).",
        ),
    ] = False,
) -> None:
    """Start a server and a local agent, deploy a config, and watch it land on disk."""
    import miru_platform_sdk

    global console
    if as_json:
        console = Console(highlight=False, soft_wrap=True, stderr=True)

    # The children run in process groups of their own (so that Ctrl-C reaches only the demo):
    # without this, SIGTERM would end the demo and leave them running.
    _stop_on_termination()
    started = time.monotonic()
    data_dir = (data_dir or default_data_dir()).absolute()
    server_dir, agent_dir = data_dir / "server", data_dir / "agent"
    root = data_dir / "root"
    for directory in (data_dir, server_dir):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_path = _socket_path(agent_dir)
    host_path = root / DEVICE_PATH.lstrip("/")
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    children: list[Child] = []
    try:
        if not _port_is_free(host, port):
            raise DemoError(
                f"port {port} on {host} is in use (another fleetconfig serve?): stop it, "
                "or choose another port with --port"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCONFIG_")}
        env["PYTHONUNBUFFERED"] = "1"
        server_env = dict(
            env,
            FLEETCONFIG_DATA_DIR=str(server_dir),
            # The default file of that data directory, so that FLEETCONFIG_DATA_DIR alone
            # points `fleetconfig apikey` at it (server_data_env).
            FLEETCONFIG_DATABASE_URL=f"sqlite+aiosqlite:///{server_dir / 'fleetconfig.db'}",
        )
        console.print(f"Starting the server on {base_url} (data in {data_dir}) …")
        server = _spawn(
            "server",
            ["-m", "fleetconfig.cli.main", "serve", "--host", host, "--port", str(port)],
            server_env,
            data_dir / "server.log",
        )
        children.append(server)
        _wait_for_server(server, base_url)
        api_key = (server_dir / "admin-api-key").read_text().strip()

        from fleetconfig.cli.client import Credentials, make_client

        # The CLI's own client: everglades, strict answers.
        with make_client(Credentials(base_url, api_key, "the demo", "the demo")) as client:
            fleet = _prepare_fleet(client)
            console.print(
                f"Config type [bold]{CONFIG_TYPE_SLUG}[/bold], release [bold]{RELEASE_VERSION}"
                f"[/bold], device [bold]{DEVICE_NAME}[/bold] ({fleet.device_id}) are ready."
            )
            agent_options = [
                "--state-dir",
                str(agent_dir),
                "--root",
                str(root),
                "--socket",
                str(socket_path),
            ]
            agent_env = dict(env, FLEETCONFIG_AGENT_KEY_BITS=str(key_bits))
            identity = _identity(agent_dir)
            if (
                identity.get("device_id") != fleet.device_id
                or identity.get("server_url") != base_url
            ):
                command, token = _provisioning(client, fleet, identity)
                console.print(f"Provisioning the agent ({key_bits}-bit device key) …")
                provisioning = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "fleetconfig.cli.agent",
                        *command,
                        "--server",
                        base_url,
                        *agent_options,
                    ],
                    env=dict(agent_env, FLEETCONFIG_PROVISIONING_TOKEN=token),
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if provisioning.returncode != 0:
                    raise DemoError(f"provisioning failed:\n{provisioning.stderr.strip()}")
            console.print(f"Starting the agent (files under {root}) …")
            agent = _spawn(
                "agent",
                ["-m", "fleetconfig.cli.agent", "run", *agent_options],
                agent_env,
                data_dir / "agent.log",
            )
            children.append(agent)
            _wait_for_online(client, fleet.device_id, agent, timeout=20)
            values = {
                "max_speed": 1.5,
                "mode": "indoor",
                "greeting": f"Hello from fleetconfig ({time.strftime('%Y-%m-%d %H:%M:%S')})",
            }
            deploy_started = time.monotonic()
            deployment_id, expected = _deploy(client, fleet, values, "the fleetconfig demo")
            console.print(f"Deployed [bold]{deployment_id}[/bold]; waiting for the agent …")
            _wait_for_file(host_path, expected, agent, timeout=45)
            landed = time.monotonic()
            status = _wait_for_status(client, deployment_id)
            console.print(
                f"[green bold]The config landed on disk[/green bold] "
                f"{(landed - deploy_started) * 1000:.0f} ms after the deploy call "
                f"({landed - started:.1f} s after starting); the server says "
                f"[bold]{status}[/bold]."
            )
            console.print(f"[bold]{host_path}[/bold]:")
            console.print(escape(expected.rstrip()))
            if as_json:
                summary = {
                    "server_url": base_url,
                    "api_key": api_key,
                    "config_schema_id": fleet.schema_id,
                    "release_id": fleet.release_id,
                    "device_id": fleet.device_id,
                    "deployment_id": deployment_id,
                    "status": status,
                    "file": str(host_path),
                    "socket": str(socket_path),
                    "server_data_env": server_data_env(data_dir),
                    "landed_ms": round((landed - deploy_started) * 1000, 1),
                }
                print(json.dumps(summary), flush=True)
            if once:
                return
            _instructions(base_url, api_key, fleet, host_path, socket_path, data_dir)
        _watch(host_path, children, expected)
    except KeyboardInterrupt:
        console.print("\nStopping …")
    except DemoError as error:
        console.print(f"[red]Demo failed:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    except miru_platform_sdk.APIError as error:
        console.print(f"[red]Demo failed: the server refused a request:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    except httpx.HTTPError as error:
        console.print(f"[red]Demo failed: cannot talk to the server:[/red] {escape(str(error))}")
        raise typer.Exit(1) from None
    finally:
        # Agent first, so it says goodbye to a server that is still there.
        with contextlib.suppress(KeyboardInterrupt):
            for child in reversed(children):
                child.stop()
    console.print("Stopped the agent and the server. Run `fleetconfig demo` again to resume.")
