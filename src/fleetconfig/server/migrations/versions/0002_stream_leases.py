"""stream leases: which server process holds each device's push stream

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_leases",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_leases")),
    )
    with op.batch_alter_table("stream_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stream_leases_expires_at"), ["expires_at"], unique=False
        )
    # A nullable column: existing devices keep their rows; none has a holder yet, so a
    # device left online by a process that died before this upgrade stays as it was.
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stream_holder_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_devices_stream_holder_id"), ["stream_holder_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_stream_holder_id"))
        batch_op.drop_column("stream_holder_id")
    with op.batch_alter_table("stream_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_leases_expires_at"))
    op.drop_table("stream_leases")
