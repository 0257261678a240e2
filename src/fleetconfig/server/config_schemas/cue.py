"""CUE schemas, checked with the ``cue`` command when one is on ``PATH``.

There is no CUE implementation in Python, so the server shells out: the documents (one CUE
package) are written to a private temporary directory and ``cue vet`` runs on them, alone to
check the schema, or with the instance (``-c``: every field concrete) to validate an instance.
Instances are unified with the package's top-level value, so a schema constrains the fields
of the config file directly (``max_speed: number & <=5``).

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
MAX_ERRORS = 1000
# ``field.path: message`` at the start of a cue error.
_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_#$][\w#$]*(?:\.[\w#$\"-]+)*): ")


@dataclass(frozen=True)
class CueDocument:
    name: str
    data: str


def cue_executable() -> str | None:
    return shutil.which("cue")


def require_cue() -> str:
    executable = cue_executable()
    if executable is None:
        raise SchemaLanguageUnavailable(
            "CUE schemas need the cue command, which is not installed on this server",
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
            arguments += files
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
