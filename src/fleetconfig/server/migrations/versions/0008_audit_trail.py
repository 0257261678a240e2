"""audit trail: every change, who made it, from where, before and after

Revision ID: 0008_audit_trail
Revises: 0007_deployment_health
Create Date: 2026-12-02 06:10:00

- ``audit_events``: append-only, one row per changed object (written by the change's own
  transaction); ``seq`` orders it. No foreign keys, so that the trail outlives what it names.
- API keys holding every resource's manage scope (made with "all") also get ``audit:manage``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_trail"
down_revision: str | None = "0007_deployment_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every manage scope at the parent revision: what "all" meant when those keys were made.
OLD_MANAGE_ALL = {
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
    )
}
NEW_MANAGE = "audit:manage"


def _grant_audit_to_all_keys() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("scopes", sa.JSON()))
    bind = op.get_bind()
    for key_id, scopes in bind.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        if set(scopes) >= OLD_MANAGE_ALL and NEW_MANAGE not in scopes:
            bind.execute(
                keys.update().where(keys.c.id == key_id).values(scopes=[*scopes, NEW_MANAGE])
            )


def _revoke_audit_from_all_keys() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("scopes", sa.JSON()))
    bind = op.get_bind()
    for key_id, scopes in bind.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        kept = [scope for scope in scopes if not scope.startswith("audit:")]
        if kept != scopes:
            bind.execute(keys.update().where(keys.c.id == key_id).values(scopes=kept))


def upgrade() -> None:
    _grant_audit_to_all_keys()
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_name", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("release_id", sa.String(length=64), nullable=True),
        sa.Column("rollout_id", sa.String(length=64), nullable=True),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    # Few indexes: each costs every change. A workspace's trail reads ``seq`` backwards.
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for column in ("object_id", "device_id", "release_id"):
            batch_op.create_index(batch_op.f(f"ix_audit_events_{column}"), [column], unique=False)
        batch_op.create_index(
            "ix_audit_events_rollout_id",
            ["rollout_id"],
            unique=False,
            sqlite_where=sa.text("rollout_id IS NOT NULL"),
            postgresql_where=sa.text("rollout_id IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_table("audit_events")
    _revoke_audit_from_all_keys()
