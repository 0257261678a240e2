"""Migration 0004 (the everglades superset model) carries a database made at 0003: its rows
answer tetons exactly as before, everglades sees them as one-slot schemas, and the schema's
identity (get-or-create by content) survives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from fleetconfig.server import migrate
from fleetconfig.server.app import create_app
from fleetconfig.server.auth.api_keys import create_key
from fleetconfig.server.config_schemas.rules import json_schema_digest
from fleetconfig.server.kit.db import Database
from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.settings import Settings
from tests.push_fakes import FakeTransport
from tests.support import (
    EVERGLADES,
    ApiCaller,
    backend,
    drop_pg_database,
    fresh_database_url,
)

SCHEMA = {"type": "object", "properties": {"speed": {"type": "integer"}}}
T0 = datetime(2026, 11, 1, 8, 30, 0)
T1 = datetime(2026, 11, 1, 9, 0, 0)
STAMP0, STAMP1 = "2026-11-01T08:30:00Z", "2026-11-01T09:00:00Z"

ROWS = [
    ("config_types", {"id": "cfg_type_m", "name": "Motion", "slug": "motion"}),
    (
        "config_schemas",
        {
            "id": "cfg_sch_m",
            "config_type_id": "cfg_type_m",
            "digest": json_schema_digest(SCHEMA),
            "instance_filepath": "/etc/robot/motion.yaml",
            "language": "jsonschema",
            "format": "json",
        },
    ),
    (
        "schema_documents",
        {"id": "sch_doc_m", "config_schema_id": "cfg_sch_m", "position": 0, "name": "m.json"},
    ),
    (
        "config_instances",
        {
            "id": "cfg_inst_m",
            "config_schema_id": "cfg_sch_m",
            "config_type_id": "cfg_type_m",
            "filepath": "/etc/robot/motion.yaml",
            "format": "json",
            "data": '{"speed": 3}',
        },
    ),
    ("releases", {"id": "rls_m", "version": "1.0.0"}),
    ("release_config_schemas", {"release_id": "rls_m", "config_schema_id": "cfg_sch_m"}),
    ("devices", {"id": "dvc_m", "name": "arm-1", "status": "offline"}),
    (
        "deployments",
        {
            "id": "dpl_m",
            "device_id": "dvc_m",
            "release_id": "rls_m",
            "description": "first",
            "target_status": "deployed",
            "activity_status": "deployed",
            "error_status": "none",
        },
    ),
    (
        "deployment_config_instances",
        {"deployment_id": "dpl_m", "config_instance_id": "cfg_inst_m", "position": 0},
    ),
]
UNSCOPED = {"schema_documents", "release_config_schemas", "deployment_config_instances"}
STAMPED = {
    "config_types": ("created_at", "updated_at"),
    "config_schemas": ("created_at", "updated_at"),
    "config_instances": ("created_at",),
    "releases": ("created_at", "updated_at"),
    "devices": ("created_at", "updated_at"),
    "deployments": ("staged_at", "created_at", "updated_at"),
}


async def populate_at_0003(url: str) -> tuple[str, str]:
    """Rows as fleetconfig at revision 0003 stored them; return (workspace id, key secret)."""
    await asyncio.to_thread(migrate.upgrade, url, "0003")
    database = Database(url)
    try:
        async with database.session(write=True) as session:
            created = await create_key(session, "migration", ["all"])
            workspace_id = created.key.workspace_id
            for table, values in ROWS:
                row = dict(values)
                if table not in UNSCOPED:
                    row["workspace_id"] = workspace_id
                for column in STAMPED.get(table, ()):
                    row[column] = T0
                if table == "deployments":
                    row.update(targeted_at=T1, deployed_at=T1, updated_at=T1)
                if table == "schema_documents":
                    row["data"] = json.dumps(SCHEMA)
                if table == "release_config_schemas":
                    row["position"] = 0
                columns = ", ".join(row)
                placeholders = ", ".join(f":{name}" for name in row)
                await session.execute(
                    text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"), row
                )
            await session.commit()
    finally:
        await database.dispose()
    return workspace_id, created.secret


@pytest.fixture
async def migrated(tmp_path: Path) -> AsyncIterator[tuple[ApiCaller, str]]:
    url = await fresh_database_url(tmp_path)
    try:
        _, secret = await populate_at_0003(url)
        # A downgrade and a second upgrade carry the data too.
        await asyncio.to_thread(migrate.upgrade, url)
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0003")
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        app = create_app(settings, push=PushHub(transports=[FakeTransport()]))
        async with app.router.lifespan_context(app):  # upgrades to head
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield ApiCaller(client, secret), url
    finally:
        if backend() == "postgresql":
            await drop_pg_database(url)


TETONS_SCHEMA = {
    "object": "config_schema",
    "id": "cfg_sch_m",
    "digest": json_schema_digest(SCHEMA),
    "config_type_name": "Motion",
    "instance_filepath": "/etc/robot/motion.yaml",
    "created_at": STAMP0,
    "updated_at": STAMP0,
    "config_type_id": "cfg_type_m",
    "language": "jsonschema",
    "format": "json",
}
TETONS_INSTANCE = {
    "object": "config_instance",
    "id": "cfg_inst_m",
    "config_type_name": "Motion",
    "filepath": "/etc/robot/motion.yaml",
    "created_at": STAMP0,
    "config_schema_id": "cfg_sch_m",
    "config_type_id": "cfg_type_m",
}
TETONS_DEVICE = {
    "object": "device",
    "id": "dvc_m",
    "name": "arm-1",
    "status": "offline",
    "agent_version": None,
    "last_connected_at": None,
    "last_disconnected_at": None,
    "created_at": STAMP0,
    "updated_at": STAMP0,
}
TETONS_DEPLOYMENT = {
    "object": "deployment",
    "id": "dpl_m",
    "description": "first",
    "status": "deployed",
    "activity_status": "deployed",
    "error_status": "none",
    "target_status": "deployed",
    "device_id": "dvc_m",
    "release_id": "rls_m",
    "created_at": STAMP0,
    "updated_at": STAMP1,
}


async def test_tetons_answers_are_unchanged(migrated: tuple[ApiCaller, str]) -> None:
    api, _ = migrated
    assert await api.ok("GET", "/config_schemas/cfg_sch_m") == TETONS_SCHEMA
    instance = await api.ok("GET", "/config_instances/cfg_inst_m", params={"expand": "content"})
    assert instance == {**TETONS_INSTANCE, "content": {"format": "json", "data": '{"speed": 3}'}}
    # Beside the tetons fields, fleetconfig's extension object (decision 0009), which the
    # official clients keep as an extra field.
    device = await api.ok("GET", "/devices/dvc_m")
    assert device.pop("fleetconfig")["latest_deployment"]["id"] == "dpl_m"
    assert device == TETONS_DEVICE
    deployment = await api.ok(
        "GET", "/deployments/dpl_m", params={"expand": ["config_instances", "release"]}
    )
    assert deployment.pop("fleetconfig")["error"] is None
    assert {k: v for k, v in deployment.items() if k not in ("release", "config_instances")} == (
        TETONS_DEPLOYMENT
    )
    assert deployment["config_instances"] == [TETONS_INSTANCE]
    assert deployment["release"]["id"] == "rls_m"
    listed = await api.ok("GET", "/config_schemas")
    assert listed["data"] == [TETONS_SCHEMA]


async def test_everglades_sees_one_slot_schemas(migrated: tuple[ApiCaller, str]) -> None:
    api, _ = migrated
    everglades = ApiCaller(api.client, api.key, version=EVERGLADES)
    # A key made with "all" before groups existed manages them too.
    group = await everglades.ok("POST", "/groups", json={"name": "Arms"})
    moved = await everglades.ok("POST", "/devices/dvc_m/group", json={"group_id": group["id"]})
    assert moved["group_id"] == group["id"]
    schema = await everglades.ok("GET", "/config_schemas/cfg_sch_m")
    assert "instance_filepath" not in schema
    assert schema["instance_slots"] == [
        {
            "key": "default",
            "name": "Default",
            "filepath": "/etc/robot/motion.yaml",
            "required": True,
        }
    ]
    # The format the path's extension says, as Miru inferred it before slots existed.
    assert schema["instance_format"] == "yaml"
    instance = await everglades.ok("GET", "/config_instances/cfg_inst_m")
    assert instance["slot_key"] == "default"
    device = await everglades.ok("GET", "/devices/dvc_m")
    assert (device["description"], device["group_id"]) == (None, group["id"])
    deployment = await everglades.ok("GET", "/deployments/dpl_m")
    assert deployment["parent_id"] is None
    assert (deployment["queued_at"], deployment["deployed_at"]) == (STAMP1, STAMP1)


async def test_the_schema_identity_survives(migrated: tuple[ApiCaller, str]) -> None:
    """The same content and path sent again is the migrated schema (get-or-create), and the
    migrated instance still satisfies the slot rules of a new deployment."""
    api, _ = migrated
    again = await api.ok(
        "POST",
        "/config_schemas",
        json={
            "config_type_ref": {"slug": "motion"},
            "instance_filepath": "/etc/robot/motion.yaml",
            "language": "jsonschema",
            "format": "json",
            "documents": [{"name": "m.json", "data": json.dumps(SCHEMA, indent=2)}],
        },
    )
    assert again["id"] == "cfg_sch_m"
    redeployed = await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "again",
            "release_id": "rls_m",
            "device_id": "dvc_m",
            "config_instance_ids": ["cfg_inst_m"],
        },
    )
    assert redeployed["status"] == "queued"
