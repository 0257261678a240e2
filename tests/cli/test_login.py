"""``fleetconfig login``, ``whoami``, ``logout``; where credentials come from; exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, CliServer
from tests.support import free_port

NO_ENV: dict[str, str | None] = {"FLEETCONFIG_SERVER": None, "FLEETCONFIG_API_KEY": None}


def credentials_file(cli: Cli) -> Path:
    return Path(str(cli.env["XDG_CONFIG_HOME"])) / "fleetconfig" / "credentials.json"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would make new files world-readable: the file must be 0600 anyway."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_login_checks_the_key_and_stores_it_readable_by_the_user_alone(
    cli: Cli, cli_server: CliServer, permissive_umask: None
) -> None:
    result = cli.ok(
        "login",
        "--server",
        cli_server.url + "/beta/",
        "--api-key",
        cli_server.admin_key,
        env=NO_ENV,
    )
    assert "Logged in to" in result.stderr and "as admin" in result.stderr
    path = credentials_file(cli)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # The URL is kept without the API prefix; the key exactly as given.
    assert json.loads(path.read_text()) == {
        "server": cli_server.url,
        "api_key": cli_server.admin_key,
    }

    whoami = cli.json("whoami", env=NO_ENV)
    assert whoami["principal"]["name"] == "admin"
    assert whoami["principal"]["id"].startswith("api_key_")
    assert whoami["server"] == cli_server.url
    assert whoami["server_source"] == whoami["api_key_source"] == str(path)
    table = cli.ok("whoami", env=NO_ENV).stdout
    assert "admin" in table and cli_server.url in table

    # Logging in again over an existing file keeps it private.
    os.chmod(path, 0o644)
    cli.ok("login", "--server", cli_server.url, "--api-key", cli_server.admin_key, env=NO_ENV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert cli.json("logout")["removed"] is True
    assert not path.exists()
    assert "Not logged in" in cli.fails(2, "whoami", env=NO_ENV).stderr


def test_login_json(cli: Cli, cli_server: CliServer) -> None:
    result = cli.json(
        "login", "--server", cli_server.url, "--api-key", cli_server.admin_key, env=NO_ENV
    )
    assert result["server"] == cli_server.url and result["principal"]["name"] == "admin"
    assert result["credentials_file"] == str(credentials_file(cli))


def test_login_asks_for_what_is_missing_and_hides_the_key(cli: Cli, cli_server: CliServer) -> None:
    result = cli.ok("login", input=f"{cli_server.url}\n{cli_server.admin_key}\n", env=NO_ENV)
    assert "Server URL" in result.stderr and "API key" in result.stderr
    assert cli_server.admin_key not in result.output  # the prompt does not echo it
    assert json.loads(credentials_file(cli).read_text())["api_key"] == cli_server.admin_key


def test_a_bad_key_is_refused_and_nothing_is_stored(cli: Cli, cli_server: CliServer) -> None:
    result = cli.fails(
        1, "login", "--server", cli_server.url, "--api-key", "fck_not-a-key", env=NO_ENV
    )
    assert "401 unauthorized" in result.stderr
    assert "FLEETCONFIG_API_KEY" in result.stderr  # says what to check
    assert not credentials_file(cli).exists()


def test_an_unreachable_server_exits_3(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli.fails(3, "login", "--server", url, "--api-key", "fck_x", env=NO_ENV)
    assert "Cannot reach the server" in result.stderr
    assert url in result.stderr
    error = json.loads(
        cli.fails(3, "devices", "list", "--json", env={"FLEETCONFIG_SERVER": url}).stderr
    )["error"]
    assert error["code"] == "unreachable"


def test_a_bad_server_url_is_a_usage_error(cli: Cli) -> None:
    result = cli.fails(2, "login", "--server", "fleet.example.com", "--api-key", "k", env=NO_ENV)
    assert "not a server URL" in result.stderr


def test_environment_variables_win_over_the_file(cli: Cli, cli_server: CliServer) -> None:
    cli.ok("login", "--server", cli_server.url, "--api-key", cli_server.admin_key, env=NO_ENV)
    # A revoked or wrong key in the environment is used (and refused), whatever the file says.
    assert (
        cli.fails(
            1, "whoami", env={"FLEETCONFIG_SERVER": None, "FLEETCONFIG_API_KEY": "fck_wrong"}
        ).exit_code
        == 1
    )
    other = f"http://127.0.0.1:{free_port()}"
    assert (
        cli.fails(
            3, "whoami", env={"FLEETCONFIG_SERVER": other, "FLEETCONFIG_API_KEY": None}
        ).exit_code
        == 3
    )
    mixed = cli.json(
        "whoami", env={"FLEETCONFIG_SERVER": cli_server.url, "FLEETCONFIG_API_KEY": None}
    )
    assert mixed["server_source"] == "environment"
    assert mixed["api_key_source"] == str(credentials_file(cli))


def test_ci_needs_no_login(cli: Cli, cli_server: CliServer) -> None:
    assert not credentials_file(cli).exists()
    whoami = cli.json("whoami")
    assert whoami["server_source"] == whoami["api_key_source"] == "environment"


def test_a_missing_scope_names_the_scopes_needed(cli: Cli, cli_server: CliServer) -> None:
    key = cli_server.create_key("releases:read")
    result = cli.fails(1, "devices", "create", "robot-x", env={"FLEETCONFIG_API_KEY": key})
    assert "403 forbidden" in result.stderr
    assert "devices:write" in result.stderr


def test_the_installed_command_exit_codes_and_clean_json(
    cli_server: CliServer, tmp_path: Path
) -> None:
    """The real entry point in a subprocess: JSON alone on stdout, errors on stderr."""
    env = {
        **os.environ,
        "FLEETCONFIG_SERVER": cli_server.url,
        "FLEETCONFIG_API_KEY": cli_server.admin_key,
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    command = [sys.executable, "-m", "fleetconfig.cli.main"]
    listed = subprocess.run(
        [*command, "devices", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["object"] == "list"
    missing = subprocess.run(
        [*command, "devices", "get", "dvc_missing", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"
