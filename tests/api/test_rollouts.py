"""Rollouts through the Platform API: create, the gate moving waves on, the moves by hand,
refusals, and the engine's safety (a new app on the same database carries on; two engines
at once never start a wave twice).

Devices report their deployments and their robot software's health through the agent API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.app import create_app
from fleetconfig.server.changes import log
from fleetconfig.server.changes.model import Change
from fleetconfig.server.kit.clock import isoformat, utcnow
from fleetconfig.server.models import Deployment
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.rollouts.engine import RolloutEngine
from fleetconfig.server.settings import Settings
from tests.api.test_deployments import Fleet
from tests.push_fakes import FakeTransport
from tests.support import EVERGLADES, AgentCaller, ApiCaller, assert_error, new_agent


@dataclass
class World:
    """A fleet of activated devices, a release and its instances, and an engine of the test's
    own (the shared app runs one too: whoever steps, the outcome is the same)."""

    api: ApiCaller
    app: FastAPI
    fleet: Fleet
    engine: RolloutEngine
    agents: dict[str, AgentCaller] = field(default_factory=dict)
    release: str = ""
    instances: list[str] = field(default_factory=list)

    async def devices(self, count: int) -> list[str]:
        made = [await new_agent(self.api) for _ in range(count)]
        for agent in made:
            self.agents[agent.device_id] = agent
        return [agent.device_id for agent in made]

    async def rollout(self, device_ids: list[str], **body: Any) -> dict[str, Any]:
        response = await self.api.post("/rollouts", json=self.body(device_ids, **body))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def body(self, device_ids: list[str], **body: Any) -> dict[str, Any]:
        return {
            "release_id": self.release,
            "config_instance_ids": self.instances,
            "device_ids": device_ids,
            "waves": [1, "100%"],
            **body,
        }

    async def get(self, rollout_id: str) -> dict[str, Any]:
        return await self.api.ok("GET", f"/rollouts/{rollout_id}")  # type: ignore[no-any-return]

    async def members(self, rollout_id: str, **params: Any) -> list[dict[str, Any]]:
        page = await self.api.ok(
            "GET", f"/rollouts/{rollout_id}/devices", params={"limit": 100, **params}
        )
        return page["data"]  # type: ignore[no-any-return]

    async def report(self, rollout_id: str, wave: int, **report: Any) -> list[str]:
        """Every started device of the wave reports ``report`` (default: deployed)."""
        reported = []
        for member in await self.members(rollout_id, wave=wave, state="started"):
            agent = self.agents[member["device_id"]]
            await agent.ok(
                "POST",
                "/deployments/reports",
                json={
                    "reports": [
                        {
                            "deployment_id": member["deployment_id"],
                            **(report or {"activity_status": "deployed"}),
                        }
                    ]
                },
            )
            reported.append(member["device_id"])
        return reported

    async def health(self, member: dict[str, Any], status: str) -> None:
        """The robot's software on ``member`` says ``status`` of its rollout deployment, as
        its agent reports it (the agent API's health extension)."""
        said = {"status": status, "reported_at": isoformat(utcnow())}
        await self.agents[member["device_id"]].ok(
            "POST",
            "/deployments/reports",
            json={"reports": [{"deployment_id": member["deployment_id"], "health": said}]},
        )


@pytest.fixture
async def world(api: ApiCaller, app: FastAPI) -> World:
    fleet = Fleet(api)
    engine = RolloutEngine(app.state.services.database, FakeTransport(), tick_seconds=0)
    made = World(api, app, fleet, engine)
    made.release = await fleet.release("a")
    made.instances = await fleet.instances("a")
    return made


async def test_create_starts_the_first_wave_and_a_passed_gate_starts_the_next(world: World) -> None:
    robots = await world.devices(3)
    rollout = await world.rollout(robots, name="first", waves=[1, "100%"])
    assert rollout["object"] == "rollout" and rollout["status"] == "running"
    assert rollout["current_wave"] == 1 and rollout["wave_count"] == 2
    assert [(w["number"], w["size"], w["status"]) for w in rollout["waves"]] == [
        (1, 1, "running"),
        (2, 2, "pending"),
    ]
    assert rollout["device_states"] == {"started": 1, "waiting": 2}
    (first,) = await world.members(rollout["id"], wave=1)
    assert first["device_id"] == robots[0] and first["deployment_status"] == "queued"
    deployment = await world.api.ok("GET", f"/deployments/{first['deployment_id']}")
    assert (deployment["target_status"], deployment["release_id"]) == ("deployed", world.release)

    # Queued is not deployed: the gate waits.
    assert await world.engine.step(rollout["id"]) in ("waiting", "idle", "changed")
    assert (await world.get(rollout["id"]))["current_wave"] == 1
    await world.report(rollout["id"], 1)
    await world.engine.step(rollout["id"])
    after = await world.get(rollout["id"])
    assert after["current_wave"] == 2
    assert [w["status"] for w in after["waves"]] == ["passed", "running"]
    assert after["waves"][0]["gate"]["outcome"] == "passed"
    await world.report(rollout["id"], 2)
    await world.engine.step(rollout["id"])
    done = await world.get(rollout["id"])
    assert done["status"] == "finished" and done["finished_at"] is not None
    # Finished: its devices are free for the next rollout.
    await world.rollout(robots, waves=["100%"])


async def test_a_device_is_in_one_unfinished_rollout_at_a_time(world: World) -> None:
    robots = await world.devices(2)
    first = await world.rollout(robots[:1])
    refused = await world.api.post("/rollouts", json=world.body(robots))
    error = assert_error(refused, 409, "conflict", reason="device_in_rollout")
    assert error["params"]["device_ids"] == [robots[0]]
    assert error["params"]["rollout_ids"] == [first["id"]]
    # Aborted, it lets the device go.
    await world.api.ok("POST", f"/rollouts/{first['id']}/abort", json={})
    await world.rollout(robots)


async def test_bad_input_is_refused_and_changes_nothing(world: World) -> None:
    robots = await world.devices(1)
    before = await world.api.ok("GET", "/rollouts", params={"limit": 100})
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"waves": []}, 400, "invalid_request"),
        ({"waves": "1,100%"}, 400, "invalid_request"),
        ({"waves": [0]}, 422, "validation_failed"),
        ({"waves": ["150%"]}, 422, "validation_failed"),
        ({"waves": ["50%", "10%"]}, 422, "validation_failed"),
        ({"waves": [True]}, 400, "invalid_request"),
        ({"device_ids": []}, 422, "validation_failed"),
        ({"device_ids": ["dvc_nope"]}, 404, "not_found"),
        ({"group_ids": ["grp_nope"]}, 404, "not_found"),
        ({"release_id": "rls_nope"}, 404, "not_found"),
        ({"config_instance_ids": []}, 422, "validation_failed"),
        ({"config_instance_ids": None}, 422, "validation_failed"),
        ({"gate": {"min_healthy_percent": 101}}, 400, "invalid_request"),
        ({"gate": {"window_seconds": 0}}, 400, "invalid_request"),
        ({"gate": {"require_confirmation": "yes"}}, 400, "invalid_request"),
        ({"on_failure": "explode"}, 400, "invalid_request"),
        ({"join_policy": "always"}, 400, "invalid_request"),
        ({"rollback": 1}, 400, "invalid_request"),
    ]
    for change, status, code in cases:
        response = await world.api.post("/rollouts", json=world.body(robots) | change)
        assert_error(response, status, code)
    response = await world.api.post(
        "/rollouts", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request")
    after = await world.api.ok("GET", "/rollouts", params={"limit": 100})
    assert after["data"] == before["data"] == []
    assert_error(await world.api.get("/rollouts/rol_nope"), 404, "not_found")
    assert_error(await world.api.post("/rollouts/rol_nope/pause"), 404, "not_found")


async def test_pause_resume_advance_abort_by_hand(world: World) -> None:
    robots = await world.devices(3)
    rollout = await world.rollout(robots, waves=[1, 2, "100%"])
    path = f"/rollouts/{rollout['id']}"
    paused = await world.api.ok("POST", f"{path}/pause")
    assert paused["status"] == "paused"
    assert (
        paused["stop_reason"]["reason"] == "paused_by_hand" and paused["stop_reason"]["wave"] == 1
    )
    assert_error(await world.api.post(f"{path}/pause"), 409, "conflict", reason="rollout_paused")
    # A paused rollout is not driven, even when its gate would pass.
    await world.report(rollout["id"], 1)
    assert await world.engine.step(rollout["id"]) == "idle"
    resumed = await world.api.ok("POST", f"{path}/resume", json={})
    assert resumed["status"] == "running" and resumed["stop_reason"] is None
    assert_error(await world.api.post(f"{path}/resume"), 409, "conflict", reason="rollout_running")
    advanced = await world.api.ok("POST", f"{path}/advance")
    assert advanced["current_wave"] == 2
    assert [w["status"] for w in advanced["waves"]] == ["advanced", "running", "pending"]
    advanced = await world.api.ok("POST", f"{path}/advance")
    assert advanced["current_wave"] == 3
    assert_error(await world.api.post(f"{path}/advance"), 409, "conflict", reason="no_next_wave")
    aborted = await world.api.ok("POST", f"{path}/abort")
    assert aborted["status"] == "aborted" and aborted["stop_reason"]["reason"] == "aborted_by_hand"
    for move in ("pause", "resume", "advance", "abort"):
        assert_error(
            await world.api.post(f"{path}/{move}"), 409, "conflict", reason="rollout_aborted"
        )
    listed = await world.api.ok("GET", "/rollouts", params={"status": "aborted"})
    assert [item["id"] for item in listed["data"]] == [rollout["id"]]


async def test_a_failed_gate_pauses_with_the_reason_and_the_devices(world: World) -> None:
    robots = await world.devices(3)
    rollout = await world.rollout(
        robots, waves=[2, "100%"], gate={"min_healthy_percent": 100, "require_confirmation": True}
    )
    await world.report(rollout["id"], 1)
    wave = await world.members(rollout["id"], wave=1)
    await world.health(wave[0], "confirmed")
    await world.health(wave[1], "rejected")
    await world.engine.step(rollout["id"])
    paused = await world.get(rollout["id"])
    assert paused["status"] == "paused" and paused["current_wave"] == 1
    reason = paused["stop_reason"]
    assert reason["reason"] == "too_many_failed" and reason["device_ids"] == [wave[1]["device_id"]]
    assert paused["waves"][0]["status"] == "failed"
    # The third robot never got the release.
    (third,) = await world.members(rollout["id"], wave=2)
    assert third["state"] == "waiting" and third["deployment_id"] is None


async def test_an_unconfirmed_wave_fails_at_the_end_of_its_window(world: World) -> None:
    robots = await world.devices(1)
    rollout = await world.rollout(
        robots, waves=["100%"], gate={"require_confirmation": True, "window_seconds": 60}
    )
    await world.report(rollout["id"], 1)
    assert await world.engine.step(rollout["id"]) in ("waiting", "idle", "changed")
    assert (await world.get(rollout["id"]))["status"] == "running"
    await world.engine.step(rollout["id"], utcnow() + timedelta(seconds=61))
    paused = await world.get(rollout["id"])
    assert paused["stop_reason"]["reason"] == "not_enough_healthy"
    assert paused["stop_reason"]["device_ids"] == robots


async def test_abort_on_failure_rolls_the_wave_back_to_its_previous_deployment(
    world: World,
) -> None:
    robots = await world.devices(3)
    old_release = world.release
    old_instances = world.instances
    previous = {}
    for robot in robots:
        made = await world.fleet.made(robot, old_release, old_instances, target="deployed")
        previous[robot] = made["id"]
    world.release = await world.fleet.release("a")
    world.instances = await world.fleet.instances("a")
    rollout = await world.rollout(
        robots, waves=[2, "100%"], on_failure="abort", rollback=True, gate={"max_failed_percent": 0}
    )
    wave = await world.members(rollout["id"], wave=1)
    assert {member["previous_deployment_id"] for member in wave} == {
        previous[m["device_id"]] for m in wave
    }
    failing = wave[0]
    await world.agents[failing["device_id"]].ok(
        "POST",
        "/deployments/reports",
        json={
            "reports": [
                {
                    "deployment_id": failing["deployment_id"],
                    "error_status": "failed",
                    "error_message": "disk full",
                }
            ]
        },
    )
    await world.engine.step(rollout["id"])
    aborted = await world.get(rollout["id"])
    assert aborted["status"] == "aborted"
    assert aborted["stop_reason"]["reason"] == "too_many_failed"
    for member in await world.members(rollout["id"], wave=1):
        assert member["state"] == "rolled_back", member
        device = await world.api.ok(
            "GET",
            "/deployments",
            params={"device_id": member["device_id"], "target_status": "deployed"},
        )
        (target,) = device["data"]
        assert target["release_id"] == old_release and target["id"] != previous[member["device_id"]]
        instances = await world.api.ok(
            "GET", f"/deployments/{target['id']}", params={"expand": "config_instances"}
        )
        assert [item["id"] for item in instances["config_instances"]] == old_instances
    # Wave 2 was never started; its device still runs the old release.
    (untouched,) = await world.members(rollout["id"], wave=2)
    assert untouched["state"] == "waiting"


async def test_devices_joining_a_targeted_group_follow_the_policy(world: World) -> None:
    everglades = ApiCaller(world.api.client, world.api.key, version=EVERGLADES)
    group = await everglades.ok("POST", "/groups", json={"name": f"g-{world.release}"})
    robots = await world.devices(4)
    for robot in robots[:2]:
        await everglades.ok("POST", f"/devices/{robot}/group", json={"group_id": group["id"]})
    joining = await world.rollout(
        [], group_ids=[group["id"]], join_policy="next_wave", waves=[1, "100%"]
    )
    ignoring_body = world.body([robots[3]], group_ids=[group["id"]], join_policy="ignore")
    # The group's devices are taken: a second rollout over the group is refused.
    assert_error(await world.api.post("/rollouts", json=ignoring_body), 409, "conflict")
    await everglades.ok("POST", f"/devices/{robots[2]}/group", json={"group_id": group["id"]})
    await world.engine.step(joining["id"])
    late = await world.members(joining["id"], device_id=robots[2])
    assert late[0]["wave"] == 2 and late[0]["joined_late"] is True and late[0]["state"] == "waiting"
    assert (await world.get(joining["id"]))["waves"][1]["size"] == 2


async def test_ignore_policy_leaves_joiners_out(world: World) -> None:
    everglades = ApiCaller(world.api.client, world.api.key, version=EVERGLADES)
    group = await everglades.ok("POST", "/groups", json={"name": f"i-{world.release}"})
    robots = await world.devices(2)
    await everglades.ok("POST", f"/devices/{robots[0]}/group", json={"group_id": group["id"]})
    rollout = await world.rollout([], group_ids=[group["id"]], waves=["100%"])
    await everglades.ok("POST", f"/devices/{robots[1]}/group", json={"group_id": group["id"]})
    await world.engine.step(rollout["id"])
    assert [m["device_id"] for m in await world.members(rollout["id"])] == [robots[0]]


async def test_per_device_config_instances(world: World) -> None:
    robots = await world.devices(2)
    own = await world.fleet.instances("a")
    rollout = await world.rollout(
        robots, waves=["100%"], device_config_instance_ids={robots[1]: own}
    )
    members = {m["device_id"]: m for m in await world.members(rollout["id"])}
    for robot, expected in ((robots[0], world.instances), (robots[1], own)):
        detail = await world.api.ok(
            "GET",
            f"/deployments/{members[robot]['deployment_id']}",
            params={"expand": "config_instances"},
        )
        assert [item["id"] for item in detail["config_instances"]] == expected


async def test_scopes(world: World, key_with: Any) -> None:
    robots = await world.devices(1)
    reader = await key_with("rollouts:read")
    assert_error(await reader.post("/rollouts", json=world.body(robots)), 403, "forbidden")
    writer_only = await key_with("rollouts:write")
    assert_error(await writer_only.post("/rollouts", json=world.body(robots)), 403, "forbidden")
    assert (await reader.ok("GET", "/rollouts"))["data"] == []


@pytest.fixture
async def second_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """Another server on the same database, as after a restart (its engine stepped by hand)."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, rollout_tick_seconds=0)
    other = create_app(settings, push=PushHub(transports=[FakeTransport()]))
    async with other.router.lifespan_context(other):
        yield other


async def test_a_new_server_on_the_same_database_carries_on(
    world: World, second_app: FastAPI
) -> None:
    robots = await world.devices(2)
    rollout = await world.rollout(robots)
    await world.report(rollout["id"], 1)
    engine = second_app.state.services.rollouts
    await engine.step(rollout["id"])
    transport = httpx.ASGITransport(app=second_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
        other = ApiCaller(client, world.api.key)
        seen = await other.ok("GET", f"/rollouts/{rollout['id']}")
    assert seen["current_wave"] == 2 and seen["waves"][0]["status"] == "passed"


async def test_two_engines_at_once_never_start_a_wave_twice(
    world: World, second_app: FastAPI
) -> None:
    robots = await world.devices(4)
    rollout = await world.rollout(robots, waves=[1, 2, "100%"])
    engines = [world.engine, second_app.state.services.rollouts]
    for wave in (1, 2):
        await world.report(rollout["id"], wave)
        outcomes = await asyncio.gather(
            *(engine.step(rollout["id"]) for engine in engines for _ in range(3))
        )
        # One of them (or the shared app's engine, first) started the next wave.
        assert outcomes.count("advanced") <= 1, outcomes
        assert (await world.get(rollout["id"]))["current_wave"] == wave + 1
    async with world.app.state.services.database.session() as session:
        per_device = (
            await session.execute(
                select(Deployment.device_id, func.count())
                .where(Deployment.device_id.in_(robots), Deployment.release_id == world.release)
                .group_by(Deployment.device_id)
            )
        ).all()
    # Every started device has exactly one deployment of the release: no wave started twice.
    started = {m["device_id"] for m in await world.members(rollout["id"]) if m["deployment_id"]}
    assert {device: count for device, count in per_device} == {device: 1 for device in started}
    assert len(started) == 4


async def test_only_one_engine_holds_the_lease(app: FastAPI) -> None:
    first = RolloutEngine(
        app.state.services.database, FakeTransport(), tick_seconds=0, lease_seconds=30
    )
    second = RolloutEngine(
        app.state.services.database, FakeTransport(), tick_seconds=0, lease_seconds=30
    )
    now = utcnow() + timedelta(hours=1)  # past any lease the shared app's engine holds
    assert await first.acquire(now) is True
    assert await second.acquire(now) is False
    assert await first.acquire(now + timedelta(seconds=10)) is True
    # Once the holder's lease lapses, another takes over.
    assert await second.acquire(now + timedelta(seconds=41)) is True
    assert await first.acquire(now + timedelta(seconds=42)) is False
    await second.release()
    assert await first.acquire(now + timedelta(seconds=43)) is True
    await first.release()


async def test_every_move_is_recorded_with_who_made_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes: list[Change] = []

    async def collect(_session: AsyncSession, batch: Any) -> None:
        changes.extend(batch)

    monkeypatch.setattr(log, "SINKS", (*log.SINKS, collect))
    robots = await world.devices(2)
    rollout = await world.rollout(robots, name="recorded")
    path = f"/rollouts/{rollout['id']}"
    for move in ("pause", "resume", "advance"):
        await world.api.ok("POST", f"{path}/{move}")
    await world.report(rollout["id"], 2)
    await world.engine.step(rollout["id"])
    assert (await world.get(rollout["id"]))["status"] == "finished"
    mine = [change for change in changes if change.object_id == rollout["id"]]
    assert [(c.operation, c.after["wave"] if c.after else None, c.actor.kind) for c in mine] == [
        ("rollouts.create", 0, "api_key"),
        ("rollouts.wave_started", 1, "api_key"),
        ("rollouts.paused", 1, "api_key"),
        ("rollouts.resumed", 1, "api_key"),
        ("rollouts.advanced", 1, "api_key"),
        ("rollouts.wave_started", 2, "api_key"),
        ("rollouts.wave_passed", 2, "rollout"),
        ("rollouts.finished", 2, "rollout"),
    ]
    for change in mine:
        assert change.object_type == "rollout"
        assert change.related == {"rollout_id": rollout["id"], "release_id": world.release}
    assert mine[-1].actor.id == rollout["id"] and mine[-1].actor.name == "recorded"
    assert mine[-1].after is not None and mine[-1].after["status"] == "finished"
    # The deployments the waves made are the rollout's.
    made = [
        c
        for c in changes
        if c.object_type == "deployment"
        and c.related.get("device_id") in robots
        and c.operation != "deployments.report"  # the devices' own reports
    ]
    assert made and {(c.actor.kind, c.actor.id) for c in made} == {("rollout", rollout["id"])}


async def test_a_move_by_hand_racing_the_engine_is_a_clean_answer(
    world: World, second_app: FastAPI
) -> None:
    robots = await world.devices(3)
    rollout = await world.rollout(robots, waves=[1, 2, "100%"])
    await world.report(rollout["id"], 1)
    engine = second_app.state.services.rollouts
    answer, _ = await asyncio.gather(
        world.api.post(f"/rollouts/{rollout['id']}/advance"), engine.step(rollout["id"])
    )
    # Whoever came second either found the rollout moved (409, try again) or moved it on.
    if answer.status_code != 200:
        assert_error(answer, 409, "conflict", reason="rollout_changed")
    current = await world.get(rollout["id"])
    assert current["current_wave"] in (2, 3)
    started = [m for m in await world.members(rollout["id"]) if m["deployment_id"]]
    assert len(started) == (3 if current["current_wave"] == 3 else 2)
