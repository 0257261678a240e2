"""CUE schemas and their instances, checked by a real CUE implementation (the external ``cue``
command: a native one, or CUE compiled to WebAssembly, see tests/cue_support.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fleetconfig.server.config_schemas import cue
from tests.cue_support import cue_for_tests
from tests.support import ApiCaller, assert_error, unique_name

needs_cue = pytest.mark.skipif(cue_for_tests().command is None, reason=cue_for_tests().description)

LIMITS = 'package motion\n\nmax_speed: number & <=5\nname: string & =~"^[a-z]+$"\n'
MODE = 'package motion\n\nmode: *"safe" | "fast"\n'


async def new_type(api: ApiCaller) -> dict[str, Any]:
    slug = unique_name("cue")
    return await api.ok("POST", "/config_types", json={"name": slug, "slug": slug})  # type: ignore[no-any-return]


def cue_body(config_type: dict[str, Any], *documents: tuple[str, str]) -> dict[str, Any]:
    return {
        "config_type_ref": {"id": config_type["id"]},
        "language": "cue",
        "format": "cue",
        "documents": [{"name": name, "data": data} for name, data in documents],
    }


def instance_body(schema: dict[str, Any], data: str) -> dict[str, Any]:
    return {"config_schema_id": schema["id"], "content": {"format": "json", "data": data}}


@needs_cue
async def test_a_cue_package_is_checked_and_stored(api: ApiCaller) -> None:
    config_type = await new_type(api)
    body = cue_body(config_type, ("limits.cue", LIMITS), ("mode.cue", MODE))
    created = await api.ok("POST", "/config_schemas", json=body)
    assert (created["language"], created["format"]) == ("cue", "cue")
    fetched = await api.ok(
        "GET", f"/config_schemas/{created['id']}", params={"expand": "documents"}
    )
    assert [document["data"] for document in fetched["documents"]] == [LIMITS, MODE]
    # The same package in another order is the same schema.
    reordered = cue_body(config_type, ("mode.cue", MODE), ("limits.cue", LIMITS))
    assert (await api.ok("POST", "/config_schemas", json=reordered))["id"] == created["id"]


@needs_cue
@pytest.mark.parametrize(
    ("documents", "path", "says"),
    [
        ([("x.cue", "a: 1\na: 2\n")], "/a", "conflicting values"),
        ([("x.cue", 'a: int\na: "text"\n')], "/a", "conflicting values"),
        ([("x.cue", "a: {\n")], "", "x.cue"),
        (
            [("one.cue", "package one\n\na: 1\n"), ("two.cue", "package two\n\nb: 2\n")],
            "",
            "package",
        ),
    ],
)
async def test_an_invalid_cue_schema_is_422_and_not_stored(
    api: ApiCaller, documents: list[tuple[str, str]], path: str, says: str
) -> None:
    config_type = await new_type(api)
    error = assert_error(
        await api.post("/config_schemas", json=cue_body(config_type, *documents)),
        422,
        "validation_failed",
    )
    first = error["params"]["errors"][0]
    assert first["path"] == path, error
    assert says in first["message"], error
    # Errors name the documents as the caller did, never the server's temporary files.
    assert "document0" not in str(error)
    listed = await api.ok("GET", "/config_schemas", params={"config_type_id": config_type["id"]})
    assert listed["data"] == []


@needs_cue
async def test_instances_are_validated_against_the_cue_schema(api: ApiCaller) -> None:
    config_type = await new_type(api)
    schema = await api.ok(
        "POST",
        "/config_schemas",
        json=cue_body(config_type, ("limits.cue", LIMITS), ("mode.cue", MODE)),
    )
    # ``mode`` has a default, so it may be left out (each CUE run is seconds as WebAssembly:
    # the cases are few, each showing one thing).
    good = '{"max_speed": 2.5, "name": "arm"}'
    created = await api.ok("POST", "/config_instances", json=instance_body(schema, good))
    content = await api.ok(
        "GET", f"/config_instances/{created['id']}", params={"expand": "content"}
    )
    assert content["content"]["data"] == good

    # A problem is reported at its field, naming the caller's documents. (CUE v0.4 reports
    # the first conflict it meets; newer releases may list more.)
    error = assert_error(
        await api.post(
            "/config_instances",
            json=instance_body(schema, '{"max_speed": 9, "name": "arm", "mode": "fast"}'),
        ),
        422,
        "validation_failed",
    )
    problems = {item["path"]: item["message"] for item in error["params"]["errors"]}
    assert set(problems) == {"/max_speed"}, error
    assert "out of bound <=5" in problems["/max_speed"] and "limits.cue" in problems["/max_speed"]
    assert "instance.json" not in str(error) and "document0" not in str(error)

    # Every field must end up concrete: a field without a default cannot be missing.
    error = assert_error(
        await api.post("/config_instances", json=instance_body(schema, '{"name": "arm"}')),
        422,
        "validation_failed",
    )
    assert [item["path"] for item in error["params"]["errors"]] == ["/max_speed"], error
    assert "incomplete value" in error["params"]["errors"][0]["message"]
    listed = await api.ok("GET", "/config_instances", params={"config_schema_id": schema["id"]})
    assert [item["id"] for item in listed["data"]] == [created["id"]]


async def test_cue_without_the_cue_command_is_refused(
    api: ApiCaller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cue, "command", str(tmp_path / "no-such-cue"))
    body = cue_body(await new_type(api), ("motion.cue", "max_speed: number\n"))
    error = assert_error(
        await api.post("/config_schemas", json=body),
        422,
        "schema_language_unavailable",
        language="cue",
    )
    assert "FLEETCONFIG_CUE_COMMAND" in error["message"]


@needs_cue
async def test_a_cue_check_holds_no_write_lock(api: ApiCaller) -> None:
    """The external cue runs for a while (hundreds of ms for the WebAssembly build); other
    writers go on meanwhile: the check runs before the writing session's first statement,
    which on SQLite would take the database's one write lock."""
    config_type = await new_type(api)
    schema = await api.ok(
        "POST", "/config_schemas", json=cue_body(config_type, ("limits.cue", LIMITS))
    )
    finished: list[str] = []

    async def create_instance() -> None:
        body = instance_body(schema, '{"max_speed": 2, "name": "atlas"}')
        await api.ok("POST", "/config_instances", json=body)
        finished.append("instance")

    async def other_writer() -> None:
        await asyncio.sleep(0.05)  # once the check has started
        await new_type(api)
        finished.append("other")

    await asyncio.gather(create_instance(), other_writer())
    assert finished == ["other", "instance"]
