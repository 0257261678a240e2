"""Git commits over HTTP: get-or-create by sha, remotes of every shape, lists and errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleetconfig.server.auth.scopes import MANAGE_ALL
from fleetconfig.server.git_commits.service import GitCommitService
from tests.conftest import new_workspace_key
from tests.support import ApiCaller, assert_error, recorder

SHA = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0"


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture
async def other_api(app: FastAPI, http: httpx.AsyncClient) -> ApiCaller:
    """A caller in a second workspace."""
    _, _, secret = await new_workspace_key(app, list(MANAGE_ALL))
    return ApiCaller(http, secret)


async def create(api: ApiCaller, **fields: Any) -> dict[str, Any]:
    body = {
        "sha": SHA,
        "message": "Add motion limits",
        "origin": "https://github.com/acme/robot.git",
    }
    body.update(fields)
    return await api.ok("POST", "/git_commits", json=body)  # type: ignore[no-any-return]


async def test_create_and_get(api: ApiCaller) -> None:
    created = await create(api)
    assert created == {
        "object": "git_commit",
        "id": created["id"],
        "sha": SHA,
        "message": "Add motion limits",
        "repository_owner": "acme",
        "repository_name": "robot",
        "repository_type": "github",
        "repository_url": "https://github.com/acme/robot",
        "commit_url": f"https://github.com/acme/robot/commit/{SHA}",
        "created_at": created["created_at"],
    }
    assert created["id"].startswith("git_commit_")
    assert created["created_at"].endswith("Z")
    assert await api.ok("GET", f"/git_commits/{created['id']}") == created


async def test_same_sha_returns_the_existing_commit(api: ApiCaller) -> None:
    first = await create(api)
    again = await create(api, message="another message", origin="git@gitlab.com:x/y.git")
    assert again == first
    upper = await create(api, sha=SHA.upper())
    assert upper == first
    listed = await api.ok("GET", "/git_commits", params={"expand": "total_count"})
    assert listed["total_count"] == 1


async def test_same_sha_in_another_workspace_is_another_commit(
    api: ApiCaller, other_api: ApiCaller
) -> None:
    mine = await create(api)
    theirs = await create(other_api)
    assert mine["id"] != theirs["id"]
    assert_error(await other_api.get(f"/git_commits/{mine['id']}"), 404, "not_found", id=mine["id"])
    listed = await other_api.ok("GET", "/git_commits", params={"id": mine["id"]})
    assert listed["data"] == []


@pytest.mark.parametrize(
    ("origin", "kind", "owner", "name", "repository_url", "commit_path"),
    [
        (
            "git@github.com:acme/robot.git",
            "github",
            "acme",
            "robot",
            "https://github.com/acme/robot",
            "/commit/",
        ),
        (
            "git@github.com:acme/robot",
            "github",
            "acme",
            "robot",
            "https://github.com/acme/robot",
            "/commit/",
        ),
        (
            "ssh://git@gitlab.com/group/sub/robot.git",
            "gitlab",
            "group/sub",
            "robot",
            "https://gitlab.com/group/sub/robot",
            "/-/commit/",
        ),
        (
            "https://gitlab.com/group/robot",
            "gitlab",
            "group",
            "robot",
            "https://gitlab.com/group/robot",
            "/-/commit/",
        ),
        (
            "https://someone@bitbucket.org/team/robot.git",
            "bitbucket",
            "team",
            "robot",
            "https://bitbucket.org/team/robot",
            "/commits/",
        ),
        (
            "git@bitbucket.org:team/robot.git",
            "bitbucket",
            "team",
            "robot",
            "https://bitbucket.org/team/robot",
            "/commits/",
        ),
    ],
)
async def test_remote_shapes(
    api: ApiCaller,
    origin: str,
    kind: str,
    owner: str,
    name: str,
    repository_url: str,
    commit_path: str,
) -> None:
    created = await create(api, origin=origin)
    assert created["repository_type"] == kind
    assert created["repository_owner"] == owner
    assert created["repository_name"] == name
    assert created["repository_url"] == repository_url
    assert created["commit_url"] == repository_url + commit_path + SHA


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com/acme/robot.git",
        "git@example.org:acme/robot.git",
        "https://github.com/acme",
        "https://github.com/acme/robot/tree/main",
        "/srv/git/robot.git",
        "ftp://github.com/acme/robot.git",
        "",
        "not a url",
    ],
)
async def test_unusable_origins_are_422(api: ApiCaller, origin: str) -> None:
    error = assert_error(
        await api.post("/git_commits", json={"sha": SHA, "message": "m", "origin": origin}),
        422,
        "validation_failed",
    )
    assert error["params"]["errors"][0]["path"] == "/origin"


@pytest.mark.parametrize("bad_sha", ["", "xyz", "abc", "g" * 40, "a" * 65, "a1b2 c3d4"])
async def test_bad_sha_is_422(api: ApiCaller, bad_sha: str) -> None:
    response = await api.post(
        "/git_commits", json={"sha": bad_sha, "message": "m", "origin": "https://github.com/a/b"}
    )
    error = assert_error(response, 422, "validation_failed")
    assert error["params"]["errors"] == [
        {"path": "/sha", "message": error["params"]["errors"][0]["message"]}
    ]


async def test_long_messages_are_truncated_to_2_kb(api: ApiCaller) -> None:
    # 'é' is two bytes: 2047 bytes of 'a' then 'é' must not leave half a character.
    message = "a" * 2047 + "é" * 10
    created = await create(api, message=message)
    assert created["message"] == "a" * 2047
    exact = "b" * 2048
    assert (await create(api, sha=sha(1), message=exact))["message"] == exact
    assert (await create(api, sha=sha(2), message=""))["message"] == ""


async def test_text_the_databases_cannot_store_is_422(api: ApiCaller) -> None:
    assert_error(
        await api.post(
            "/git_commits",
            json={"sha": SHA, "message": "a\u0000b", "origin": "https://github.com/a/b"},
        ),
        422,
        "validation_failed",
    )
    raw = b'{"sha": "%s", "message": "\\ud800", "origin": "https://github.com/a/b"}' % SHA.encode()
    assert_error(await api.post("/git_commits", content=raw), 422, "validation_failed")


async def test_wrong_types_and_missing_fields_are_400(api: ApiCaller) -> None:
    origin = "https://github.com/a/b"
    assert_error(
        await api.post("/git_commits", json={"sha": SHA, "message": "m"}), 400, "invalid_request"
    )
    assert_error(
        await api.post("/git_commits", json={"sha": 5, "message": "m", "origin": origin}),
        400,
        "invalid_request",
    )
    assert_error(
        await api.post("/git_commits", json={"sha": SHA, "message": ["m"], "origin": origin}),
        400,
        "invalid_request",
    )
    assert_error(await api.post("/git_commits", content=b"{"), 400, "invalid_request")
    assert_error(await api.post("/git_commits"), 400, "invalid_request")


async def test_unknown_id_is_404(api: ApiCaller) -> None:
    assert_error(
        await api.get("/git_commits/git_commit_nope"), 404, "not_found", id="git_commit_nope"
    )


async def test_scopes(api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    created = await create(api)
    body = {"sha": sha(9), "message": "m", "origin": "https://github.com/a/b"}
    reader = await key_with("git_commits:read")
    assert_error(
        await reader.post("/git_commits", json=body),
        403,
        "forbidden",
        required_scopes=["git_commits:write"],
    )
    await reader.ok("GET", f"/git_commits/{created['id']}")
    await reader.ok("GET", "/git_commits")
    writer = await key_with("git_commits:write")
    await writer.ok("POST", "/git_commits", json=body)
    assert_error(
        await writer.get(f"/git_commits/{created['id']}"),
        403,
        "forbidden",
        required_scopes=["git_commits:read"],
    )
    assert_error(await writer.get("/git_commits"), 403, "forbidden")
    other = await key_with("config_types:manage")
    assert_error(await other.get("/git_commits"), 403, "forbidden")
    manager = await key_with("git_commits:manage")
    await manager.ok("GET", "/git_commits")


async def test_list_filters_order_and_paging(api: ApiCaller) -> None:
    made = [await create(api, sha=sha(n), message=f"m{n}") for n in range(5)]
    ids = [item["id"] for item in made]

    newest_first = await api.ok("GET", "/git_commits")
    assert [item["id"] for item in newest_first["data"]] == ids[::-1]
    assert "total_count" not in newest_first
    assert (
        newest_first["has_more"] is False
        and newest_first["limit"] == 10
        and newest_first["offset"] == 0
    )

    by_id = await api.ok("GET", "/git_commits", params={"order_by": "id:asc"})
    assert [item["id"] for item in by_id["data"]] == sorted(ids)

    page = await api.ok(
        "GET", "/git_commits", params={"order_by": "created_at:asc", "limit": 2, "offset": 1}
    )
    assert [item["id"] for item in page["data"]] == ids[1:3]
    assert page["has_more"] is True

    for params in (
        {"id": f"{ids[0]},{ids[2]}"},
        {"id": f"{ids[0]}|{ids[2]}"},
        [("id", ids[0]), ("id", ids[2])],
        [("id[]", ids[0]), ("id[]", ids[2])],
    ):
        found = await api.ok("GET", "/git_commits", params=params)
        assert sorted(item["id"] for item in found["data"]) == sorted([ids[0], ids[2]]), params

    by_sha = await api.ok(
        "GET", "/git_commits", params={"sha": f"{sha(1)}|{sha(3).upper()}", "expand": "total_count"}
    )
    assert sorted(item["sha"] for item in by_sha["data"]) == [sha(1), sha(3)]
    assert by_sha["total_count"] == 2

    both = await api.ok("GET", "/git_commits", params={"sha": sha(1), "id": ids[2]})
    assert both["data"] == []


async def test_list_refuses_unknown_expand_and_order(api: ApiCaller) -> None:
    assert_error(
        await api.get("/git_commits", params={"expand": "documents"}), 400, "invalid_request"
    )
    assert_error(
        await api.get("/git_commits", params={"order_by": "sha:asc"}), 400, "invalid_request"
    )


async def test_racing_creates_of_one_sha_end_with_one_commit(
    app: FastAPI, api: ApiCaller, workspace: tuple[str, str, str]
) -> None:
    """The loser of a race on the unique (workspace, sha) returns the winner's commit."""
    database = app.state.services.database
    workspace_id = workspace[0]
    origin = "https://github.com/acme/robot"
    async with database.session(write=True) as first, database.session(write=True) as second:
        winner = await GitCommitService.of(recorder(first, workspace_id)).create(
            SHA, "first", origin
        )

        async def commit_first_later() -> None:
            await asyncio.sleep(0.3)
            await first.commit()

        # On PostgreSQL the second insert waits on the first's uncommitted row, then fails on
        # the unique constraint and re-reads; on SQLite the second transaction waits for the
        # write lock and then finds the row.
        loser, _ = await asyncio.gather(
            GitCommitService.of(recorder(second, workspace_id)).create(SHA, "second", origin),
            commit_first_later(),
        )
        await second.commit()
    assert loser.id == winner.id
    listed = await api.ok("GET", "/git_commits", params={"expand": "total_count"})
    assert listed["total_count"] == 1
    assert listed["data"][0]["message"] == "first"


async def test_v1_alias(api: ApiCaller) -> None:
    created = await create(api)
    v1 = ApiCaller(api.client, api.key, prefix="/v1")
    assert (await v1.ok("GET", f"/git_commits/{created['id']}"))["id"] == created["id"]
