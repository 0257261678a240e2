"""rollouts: releases deployed wave by wave, gated on robot health

Revision ID: 0010_rollouts
Revises: 0009_webhooks
Create Date: 2026-12-02 06:00:00

New tables only; no existing data changes. See ``fleetconfig.server.rollouts``:

- ``rollouts``: what to deploy, to whom, in which waves, with which gate, and where it is;
- ``rollout_waves``: each wave's size, when it ran and its gate's last verdict;
- ``rollout_devices``: each device's wave, deployment and previous deployment;
  ``active_device_id`` (unique) keeps a device in one unfinished rollout at a time;
- ``rollout_driver``: the lease of the one server process driving rollouts (one row).

Keys that held every ``manage`` scope (the admin key, ``--scope all``) get
``rollouts:manage``, the new resource's, as ``all`` now means.
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010_rollouts"
down_revision: str | None = "0009_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


MANAGE_ALL_BEFORE = {
    f"{resource}:manage"
    for resource in (
        "config_types",
        "config_schemas",
        "config_instances",
        "git_commits",
        "releases",
        "devices",
        "deployments",
        "groups",
        "provisioning_tokens",
        "audit",
        "webhooks",
    )
}
NEW_MANAGE = "rollouts:manage"


def _grant_rollouts_to_all_keys() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("scopes", sa.JSON()))
    bind = op.get_bind()
    for key_id, scopes in bind.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        if set(scopes) >= MANAGE_ALL_BEFORE and NEW_MANAGE not in scopes:
            bind.execute(
                keys.update().where(keys.c.id == key_id).values(scopes=[*scopes, NEW_MANAGE])
            )


def upgrade() -> None:
    _grant_rollouts_to_all_keys()
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=False),
        sa.Column("config_instance_ids", sa.JSON(), nullable=False),
        sa.Column("device_config_instance_ids", sa.JSON(), nullable=False),
        sa.Column("group_ids", sa.JSON(), nullable=False),
        sa.Column("device_ids", sa.JSON(), nullable=False),
        sa.Column("join_policy", sa.String(length=16), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("gate", sa.JSON(), nullable=False),
        sa.Column("on_failure", sa.String(length=16), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_rollouts_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_rollouts_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rollouts_ws_created", ["workspace_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_rollouts_release_id"), ["release_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollouts_status"), ["status"], unique=False)

    op.create_table(
        "rollout_waves",
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("gate_started_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_waves_rollout_id_rollouts")
        ),
        sa.PrimaryKeyConstraint("rollout_id", "number", name=op.f("pk_rollout_waves")),
    )

    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("active_device_id", sa.String(length=64), nullable=True),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("joined_late", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("deployment_id", sa.String(length=64), nullable=True),
        sa.Column("previous_deployment_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_rollout_devices_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_devices_rollout_id_rollouts")
        ),
        sa.PrimaryKeyConstraint("rollout_id", "device_id", name=op.f("pk_rollout_devices")),
        sa.UniqueConstraint("active_device_id", name=op.f("uq_rollout_devices_active_device_id")),
    )
    with op.batch_alter_table("rollout_devices", schema=None) as batch_op:
        batch_op.create_index("ix_rollout_devices_wave", ["rollout_id", "wave"], unique=False)

    driver = op.create_table(
        "rollout_driver",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("holder_id", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_driver")),
    )
    # The one lease row, free from the start.
    op.bulk_insert(
        driver, [{"id": "engine", "holder_id": None, "expires_at": datetime(2000, 1, 1)}]
    )


def downgrade() -> None:
    bind = op.get_bind()
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("scopes", sa.JSON()))
    for key_id, scopes in bind.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        if NEW_MANAGE in scopes:
            kept = [scope for scope in scopes if scope != NEW_MANAGE]
            bind.execute(keys.update().where(keys.c.id == key_id).values(scopes=kept))
    op.drop_table("rollout_driver")
    with op.batch_alter_table("rollout_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_rollout_devices_wave")
    op.drop_table("rollout_devices")
    op.drop_table("rollout_waves")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_status"))
        batch_op.drop_index(batch_op.f("ix_rollouts_release_id"))
        batch_op.drop_index("ix_rollouts_ws_created")
    op.drop_table("rollouts")
