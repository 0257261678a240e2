"""api key revision: every write to api_keys tells the servers' key caches

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:45:00

A trigger, so that every writer is covered (a server, ``fleetconfig apikey``, plain SQL):
on PostgreSQL it sends ``NOTIFY fleetconfig_api_keys`` (delivered at commit); on SQLite it
bumps the one row of ``api_key_revision``. See ``fleetconfig.server.auth.cache``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_table(
            "api_key_revision",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_revision")),
        )
        op.execute("INSERT INTO api_key_revision (id, revision) VALUES (1, 0)")
        for event in SQLITE_EVENTS:
            op.execute(
                f"CREATE TRIGGER api_keys_{event}_revision AFTER {event.upper()} ON api_keys "
                "BEGIN UPDATE api_key_revision SET revision = revision + 1 WHERE id = 1; END"
            )
        return
    op.execute(
        "CREATE FUNCTION fleetconfig_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('fleetconfig_api_keys', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION fleetconfig_api_keys_changed()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER api_keys_{event}_revision")
        op.drop_table("api_key_revision")
        return
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION fleetconfig_api_keys_changed()")
