"""Bulk stage, deploy, archive and restage: the lifecycle rules over many devices at once.

Each is one transaction with a fixed number of SQL statements whatever the batch size; items
that cannot move are reported one by one; a request naming something unknown, or malformed,
is refused whole and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.models import Device
from tests.api.test_deployments import ARCHIVED, DRIFTED, QUEUED, STAGED, Fleet, statuses
from tests.push_fakes import FakeTransport
from tests.support import assert_error, count_queries, unique_name


@pytest.fixture
async def fleet(api: Any) -> Fleet:
    return Fleet(api)


async def devices(fleet: Fleet, count: int) -> list[str]:
    return [await fleet.device() for _ in range(count)]


async def stage_many(
    fleet: Fleet, release: str, device_ids: list[str], instances: list[str]
) -> Any:
    return await fleet.api.ok(
        "POST",
        "/deployments/bulk_stage",
        json={"release_id": release, "device_ids": device_ids, "config_instance_ids": instances},
    )


async def deployments_of(fleet: Fleet, release: str) -> dict[str, dict[str, Any]]:
    page = await fleet.api.ok("GET", "/deployments", params={"release_id": release, "limit": 100})
    return {item["id"]: item for item in page["data"]}


async def test_stage_many_stages_each_device_and_replaces_its_older_plan(fleet: Fleet) -> None:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    robots = await devices(fleet, 3)
    first = await stage_many(fleet, release, robots[:2], instances)
    assert first["object"] == "bulk_deployment_result"
    assert first["counts"] == {"staged": 2}
    assert [item["device_id"] for item in first["data"]] == sorted(robots[:2])
    again = await stage_many(fleet, release, robots, instances)
    assert again["counts"] == {"staged": 3}
    rows = await deployments_of(fleet, release)
    assert len(rows) == 5
    for item in first["data"]:
        assert statuses(rows[item["deployment_id"]]) == ARCHIVED
    for item in again["data"]:
        assert statuses(rows[item["deployment_id"]]) == STAGED
        detail = await fleet.api.ok(
            "GET", f"/deployments/{item['deployment_id']}", params={"expand": "config_instances"}
        )
        assert [instance["id"] for instance in detail["config_instances"]] == instances


async def test_stage_many_refuses_devices_already_on_the_release_one_by_one(
    fleet: Fleet,
) -> None:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    running, fresh = await devices(fleet, 2)
    await fleet.made(running, release, instances, target="deployed")
    result = await stage_many(fleet, release, [running, fresh], instances)
    assert result["counts"] == {"staged": 1, "refused": 1}
    (refused,) = [item for item in result["data"] if item["outcome"] == "refused"]
    assert refused["device_id"] == running and refused["deployment_id"] is None
    assert refused["error"]["code"] == "conflict"
    assert refused["error"]["params"]["reason"] == "release_mismatch"


async def test_bad_stage_requests_change_nothing(fleet: Fleet) -> None:
    release = await fleet.release("a", "b")
    a, b = await fleet.instances("a", "b")
    robots = await devices(fleet, 2)
    url = "/deployments/bulk_stage"
    body = {"release_id": release, "device_ids": robots, "config_instance_ids": [a, b]}
    unknown = await fleet.api.post(url, json={**body, "device_ids": [*robots, "dvc_nope"]})
    assert_error(unknown, 404, "not_found")
    assert unknown.json()["error"]["params"]["ids"] == ["dvc_nope"]
    assert_error(
        await fleet.api.post(url, json={**body, "config_instance_ids": [a]}),
        422,
        "validation_failed",
    )
    assert_error(
        await fleet.api.post(url, json={**body, "release_id": "rls_nope"}), 404, "not_found"
    )
    assert_error(await fleet.api.post(url, json={**body, "device_ids": []}), 400, "invalid_request")
    assert_error(
        await fleet.api.post(url, json={**body, "device_ids": [robots[0]] * 2}),
        400,
        "invalid_request",
    )
    assert_error(
        await fleet.api.post(url, json={**body, "device_ids": "all"}), 400, "invalid_request"
    )
    assert await deployments_of(fleet, release) == {}


async def test_deploy_many_by_release_deploys_staged_refuses_drifted_and_notifies(
    fleet: Fleet, notifier: FakeTransport
) -> None:
    old, new = await fleet.release("a"), await fleet.release("a")
    instances = await fleet.instances("a")
    robots = await devices(fleet, 3)
    current = {
        robot: await fleet.made(robot, old, instances, target="deployed") for robot in robots
    }
    staged = await stage_many(fleet, new, robots, instances)
    # The third robot's plan drifts: it gets another target after it was staged.
    newer = await fleet.made(robots[2], old, instances, target="deployed")
    notifier.syncs.clear()

    result = await fleet.api.ok("POST", "/deployments/bulk_deploy", json={"release_id": new})
    assert result["counts"] == {"deployed": 2, "refused": 1}
    by_device = {item["device_id"]: item for item in result["data"]}
    assert by_device[robots[2]]["error"]["params"]["reason"] == "invalid_transition"
    assert "drifted" in by_device[robots[2]]["error"]["message"]
    assert sorted(notifier.syncs) == sorted(robots[:2])

    rows = await deployments_of(fleet, new)
    for item in staged["data"]:
        expected = DRIFTED if item["device_id"] == robots[2] else QUEUED
        assert statuses(rows[item["deployment_id"]]) == expected
    for robot in robots[:2]:
        assert statuses(await fleet.get(current[robot]["id"])) == ARCHIVED
    assert statuses(await fleet.get(newer["id"])) == QUEUED


async def test_deploy_many_by_release_can_be_narrowed_to_devices(fleet: Fleet) -> None:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    robots = await devices(fleet, 3)
    await stage_many(fleet, release, robots, instances)
    result = await fleet.api.ok(
        "POST", "/deployments/bulk_deploy", json={"release_id": release, "device_ids": robots[:1]}
    )
    assert [item["device_id"] for item in result["data"]] == robots[:1]
    assert result["counts"] == {"deployed": 1}


async def test_deploy_many_by_ids_takes_one_target_per_device(fleet: Fleet) -> None:
    one, two = await fleet.release("a"), await fleet.release("a")
    instances = await fleet.instances("a")
    (robot,) = await devices(fleet, 1)
    first = await fleet.made(robot, one, instances)
    second = await fleet.made(robot, two, instances)
    result = await fleet.api.ok(
        "POST", "/deployments/bulk_deploy", json={"deployment_ids": [second["id"], first["id"]]}
    )
    outcomes = {item["deployment_id"]: item for item in result["data"]}
    winner, loser = sorted([first["id"], second["id"]])
    assert outcomes[winner]["outcome"] == "deployed"
    assert outcomes[loser]["outcome"] == "refused"
    assert outcomes[loser]["error"]["params"]["reason"] == "one_target_per_device"
    # The winner became the target, so the other plan drifted (as a single deploy does).
    assert statuses(await fleet.get(loser)) == DRIFTED


async def test_bad_selections_change_nothing(fleet: Fleet) -> None:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    (robot,) = await devices(fleet, 1)
    staged = await fleet.made(robot, release, instances)
    url = "/deployments/bulk_deploy"
    unknown = await fleet.api.post(url, json={"deployment_ids": [staged["id"], "dpl_nope"]})
    assert_error(unknown, 404, "not_found")
    for body in (
        {},
        {"deployment_ids": [staged["id"]], "release_id": release},
        {"deployment_ids": [staged["id"]], "device_ids": [robot]},
        {"deployment_ids": []},
        {"deployment_ids": [staged["id"], staged["id"]]},
        {"release_id": 7},
    ):
        assert_error(await fleet.api.post(url, json=body), 400, "invalid_request")
    assert statuses(await fleet.get(staged["id"])) == STAGED


async def test_archive_and_restage_many(fleet: Fleet) -> None:
    old, new = await fleet.release("a"), await fleet.release("a")
    instances = await fleet.instances("a")
    robots = await devices(fleet, 2)
    await stage_many(fleet, new, robots, instances)
    target = await fleet.made(robots[0], old, instances, target="deployed")  # drifts robot 0's

    restaged = await fleet.api.ok("POST", "/deployments/bulk_restage", json={"release_id": new})
    assert restaged["counts"] == {"restaged": 1}
    assert restaged["data"][0]["device_id"] == robots[0]

    archived = await fleet.api.ok(
        "POST",
        "/deployments/bulk_archive",
        json={"deployment_ids": [target["id"], *[i["deployment_id"] for i in restaged["data"]]]},
    )
    assert archived["counts"] == {"archived": 1, "refused": 1}
    again = await fleet.api.ok("POST", "/deployments/bulk_archive", json={"release_id": new})
    assert again["counts"] == {"archived": 1}  # robot 1's; robot 0's is archived already
    repeat = await fleet.api.ok(
        "POST",
        "/deployments/bulk_archive",
        json={"deployment_ids": [i["deployment_id"] for i in restaged["data"]]},
    )
    assert repeat["counts"] == {"unchanged": 1}


async def test_scopes_are_those_of_the_single_operations(fleet: Fleet, key_with: Any) -> None:
    release = await fleet.release("a")
    instances = await fleet.instances("a")
    (robot,) = await devices(fleet, 1)
    stage_only = await key_with("deployments:write", "deployments:stage")
    body = {"release_id": release, "device_ids": [robot], "config_instance_ids": instances}
    assert (await stage_only.post("/deployments/bulk_stage", json=body)).status_code == 200
    refused = await stage_only.post("/deployments/bulk_deploy", json={"release_id": release})
    assert_error(refused, 403, "forbidden")
    archive_only = await key_with("deployments:archive")
    assert_error(await archive_only.post("/deployments/bulk_stage", json=body), 403, "forbidden")
    ok = await archive_only.post("/deployments/bulk_archive", json={"release_id": release})
    assert ok.status_code == 200


# -- statement counts ------------------------------------------------------------------------


async def insert_devices(app: FastAPI, workspace_id: str, count: int) -> list[str]:
    """Many devices at once, straight into the database (creating them is not under test)."""
    now = utcnow()
    rows = [
        {
            "id": ids.new_id(ids.DEVICE),
            "workspace_id": workspace_id,
            "name": unique_name("bulk")[:48],
            "status": "inactive",
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(count)
    ]
    async with app.state.services.database.session(write=True) as session:
        await session.execute(insert(Device), rows)
        await session.commit()
    return sorted(row["id"] for row in rows)


async def test_bulk_statement_counts_do_not_grow_with_the_batch(
    app: FastAPI, fleet: Fleet, workspace: tuple[str, str, str]
) -> None:
    workspace_id = workspace[0]
    counts: dict[int, dict[str, int]] = {}
    for size in (1, 1000):
        old, new, spare = [await fleet.release("a", "b") for _ in range(3)]
        instances = await fleet.instances("a", "b")
        robots = await insert_devices(app, workspace_id, size)
        await stage_many(fleet, old, robots, instances)
        await fleet.api.ok("POST", "/deployments/bulk_deploy", json={"release_id": old})
        # The worst case: each deploy below also supersedes a target and drifts a plan.
        await stage_many(fleet, spare, robots, instances)
        counted: dict[str, int] = {}
        for name, path, body in (
            (
                "stage",
                "bulk_stage",
                {"release_id": new, "device_ids": robots, "config_instance_ids": instances},
            ),
            ("deploy", "bulk_deploy", {"release_id": new}),
            ("archive", "bulk_archive", {"release_id": spare, "device_ids": robots}),
        ):
            with count_queries(app) as statements:
                result = await fleet.api.ok("POST", f"/deployments/{path}", json=body)
            assert result["counts"] == {result["action"]: size}
            counted[name] = len([s for s in statements if s.strip().upper() != "BEGIN"])
        assert counts.setdefault(size, counted)
    assert counts[1] == counts[1000], counts
    # 9, plus the webhook outbox's one read of which event types have subscribers, and one
    # INSERT for the audit trail (all the batch's events in one statement).
    assert max(counts[1].values()) <= 11, counts
