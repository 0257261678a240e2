"""api versions: the everglades superset model (instance slots and format, instance slot
keys, device description/group/archived, groups, provisioning tokens)

Revision ID: 0004_api_versions
Revises: 0003
Create Date: 2026-12-02 02:10:00

Existing data is carried: every schema gets one required slot ``default`` at its
``instance_filepath`` (what Miru did for its own schemas) and the instance format its path's
extension says; every instance fills slot ``default``. A schema's identity becomes (type,
digest, slots and format) instead of (type, digest, path), with the same rows.
"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_api_versions"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIQUE = "uq_config_schemas_workspace_id_config_type_id_digest_instance_filepath"
NEW_UNIQUE = "uq_config_schemas_workspace_id_config_type_id_digest_slots_key"


# What 0001 named it on PostgreSQL, whose identifiers have at most 63 bytes (SQLAlchemy
# shortened it with a hash of the full name).
OLD_UNIQUE_POSTGRESQL = "uq_config_schemas_workspace_id_config_type_id_digest_in_dcdb"


def _old_unique() -> str:
    return OLD_UNIQUE_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else OLD_UNIQUE


def _instance_format(filepath: str) -> str:
    return "yaml" if filepath.lower().endswith((".yaml", ".yml")) else "json"


def _slots_key(instance_format: str, slots: list[dict[str, object]]) -> str:
    # Frozen copy of fleetconfig.server.config_schemas.rules.slots_key at this revision.
    canonical = json.dumps(
        {"instance_format": instance_format, "slots": slots},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Keys made with "all" held every resource's manage scope; they keep doing so.
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
    )
}
NEW_MANAGE = ["groups:manage", "provisioning_tokens:manage"]


def _grant_new_resources_to_all_keys() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("scopes", sa.JSON()))
    bind = op.get_bind()
    for key_id, scopes in bind.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        if set(scopes) >= OLD_MANAGE_ALL:
            added = [scope for scope in NEW_MANAGE if scope not in scopes]
            bind.execute(keys.update().where(keys.c.id == key_id).values(scopes=scopes + added))


def upgrade() -> None:
    _grant_new_resources_to_all_keys()
    op.create_table(
        "groups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["groups.id"], name=op.f("fk_groups_parent_id_groups")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_groups_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_groups_workspace_id_name")),
    )
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_groups_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(
            "ix_groups_ws_created", ["workspace_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "provisioning_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_provisioning_tokens_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provisioning_tokens_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_tokens")),
    )
    with op.batch_alter_table("provisioning_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provisioning_tokens_workspace_id"), ["workspace_id"], unique=False
        )

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("group_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_devices_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_devices_group_id_groups"), "groups", ["group_id"], ["id"]
        )

    with op.batch_alter_table("config_instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("slot_key", sa.String(length=128), nullable=False, server_default="default")
        )

    # Schemas: add the columns nullable, fill them row by row, then require them.
    with op.batch_alter_table("config_schemas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance_slots", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("instance_format", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("slots_key", sa.String(length=64), nullable=True))
    schemas = sa.table(
        "config_schemas",
        sa.column("id", sa.String()),
        sa.column("instance_filepath", sa.String()),
        sa.column("instance_slots", sa.JSON()),
        sa.column("instance_format", sa.String()),
        sa.column("slots_key", sa.String()),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(schemas.c.id, schemas.c.instance_filepath)).all()
    for schema_id, filepath in rows:
        slots: list[dict[str, object]] = [
            {
                "key": "default",
                "name": "Default",
                "filepath": filepath,
                "required": True,
                "description": None,
            }
        ]
        instance_format = _instance_format(filepath)
        bind.execute(
            schemas.update()
            .where(schemas.c.id == schema_id)
            .values(
                instance_slots=slots,
                instance_format=instance_format,
                slots_key=_slots_key(instance_format, slots),
            )
        )
    with op.batch_alter_table("config_schemas", schema=None) as batch_op:
        batch_op.alter_column("instance_slots", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("instance_format", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("slots_key", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint(_old_unique(), type_="unique")
        batch_op.create_unique_constraint(
            NEW_UNIQUE, ["workspace_id", "config_type_id", "digest", "slots_key"]
        )


def downgrade() -> None:
    # Back to one path per schema: only schemas with one slot (all that 0003 could make)
    # keep their exact identity; others keep their tetons path.
    with op.batch_alter_table("config_schemas", schema=None) as batch_op:
        batch_op.drop_constraint(NEW_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(
            _old_unique(), ["workspace_id", "config_type_id", "digest", "instance_filepath"]
        )
        batch_op.drop_column("slots_key")
        batch_op.drop_column("instance_format")
        batch_op.drop_column("instance_slots")
    with op.batch_alter_table("config_instances", schema=None) as batch_op:
        batch_op.drop_column("slot_key")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_devices_group_id_groups"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_devices_group_id"))
        batch_op.drop_column("archived_at")
        batch_op.drop_column("group_id")
        batch_op.drop_column("description")
    with op.batch_alter_table("provisioning_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provisioning_tokens_workspace_id"))
    op.drop_table("provisioning_tokens")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_index("ix_groups_ws_created")
        batch_op.drop_index(batch_op.f("ix_groups_parent_id"))
    op.drop_table("groups")
