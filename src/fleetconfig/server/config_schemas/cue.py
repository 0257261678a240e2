"""CUE schemas, checked with an external ``cue`` command (the ``cue_command`` setting,
``FLEETCONFIG_CUE_COMMAND``: a name looked up on ``PATH`` or a path; default ``cue``).

There is no CUE implementation in Python, so the server shells out: the documents (one CUE
package) are written to a private temporary directory and ``cue vet`` runs on them, alone to
check the schema (``-c=false``: consistent, but fields may stay open, as a schema's do), or
with the instance (``-c``: every field concrete) to validate an instance. Instances are
unified with the package's top-level value, so a schema constrains the fields of the config
file directly (``max_speed: number & <=5``). Only ``cue vet`` with those flags is used, so any
CUE release that has them works (see the README for the ones tested).

Without a ``cue`` executable, CUE schemas and their instances are refused with
``422 schema_language_unavailable`` rather than accepted unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetconfig.server.kit.errors import SchemaLanguageUnavailable

TIMEOUT_SECONDS = 20.0
DEFAULT_COMMAND = "cue"
# Set from the server's settings when the app is made (``configure``).
command = DEFAULT_COMMAND
MAX_ERRORS = 1000
# ``field.path: message`` at the start of a cue error.
_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_#$][\w#$]*(?:\.[\w#$\"-]+)*): ")


@dataclass(frozen=True)
class CueDocument:
    name: str
    data: str


def configure(cue_command: str) -> None:
    """Use ``cue_command`` (a name on ``PATH`` or a path) as the ``cue`` executable.

    Process-wide, set by ``create_app`` from the settings: a process serves one app.
    """
    global command
    command = cue_command or DEFAULT_COMMAND


def cue_executable() -> str | None:
    return shutil.which(command)


def require_cue() -> str:
    executable = cue_executable()
    if executable is None:
        raise SchemaLanguageUnavailable(
            f"CUE schemas need the cue command ({command!r}, set by FLEETCONFIG_CUE_COMMAND), "
            "which is not installed on this server",
            language="cue",
        )
    return executable


def _errors_from_output(output: str, names: dict[str, str]) -> list[dict[str, str]]:
    """Split cue's report into ``{path, message}`` items, naming files as the caller did."""
    for temporary, given in names.items():
        output = output.replace(f"./{temporary}", given).replace(temporary, given)
    blocks: list[list[str]] = []
    for line in output.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() and blocks:
            blocks[-1].append(line.strip())
        else:
            blocks.append([line.strip()])
    errors: list[dict[str, str]] = []
    for block in blocks[:MAX_ERRORS]:
        message = " ".join(block)
        match = _FIELD_PREFIX.match(block[0])
        path = ""
        if match:
            path = "".join("/" + part.strip('"') for part in match.group("field").split("."))
        errors.append({"path": path, "message": message})
    return errors or [{"path": "", "message": "cue vet failed"}]


async def vet(
    documents: list[CueDocument], instance_json: str | None = None
) -> list[dict[str, str]]:
    """Run ``cue vet``; return the errors it reports (empty when everything is valid)."""
    executable = require_cue()
    with tempfile.TemporaryDirectory(prefix="fleetconfig-cue-") as directory:
        root = Path(directory)
        names: dict[str, str] = {}
        files: list[str] = []
        for index, document in enumerate(documents):
            # Files are named by position: document names are the caller's, not safe paths.
            filename = f"document{index}.cue"
            (root / filename).write_text(document.data, encoding="utf-8")
            names[filename] = document.name
            files.append(filename)
        arguments = [executable, "vet"]
        if instance_json is not None:
            (root / "instance.json").write_text(instance_json, encoding="utf-8")
            names["instance.json"] = "instance"
            arguments += ["-c", *files, "instance.json"]
        else:
            arguments += ["-c=false", *files]
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": directory,
            "CUE_CACHE_DIR": str(root / ".cache"),
            "CUE_CONFIG_DIR": str(root / ".config"),
        }
        process = await asyncio.create_subprocess_exec(
            *arguments,
            cwd=directory,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return [{"path": "", "message": f"cue vet did not finish within {TIMEOUT_SECONDS:g} s"}]
    if process.returncode == 0:
        return []
    output = (stderr or b"").decode("utf-8", "replace") + (stdout or b"").decode("utf-8", "replace")
    return _errors_from_output(output, names)
