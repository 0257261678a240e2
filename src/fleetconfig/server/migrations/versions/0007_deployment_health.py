"""deployment health: what the robot's own software says of the config it was given

Revision ID: 0007_deployment_health
Revises: 0006_idempotency
Create Date: 2026-12-02 05:40:00

Columns only (existing deployments start with no word from the robot):

- ``health_status``: ``confirmed`` or ``rejected`` by the software on the robot, reported by
  the agent; NULL while it has said nothing;
- ``health_reason``: why it rejected the config (or a note with a confirmation);
- ``health_reported_at``: when the robot's software said so.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_deployment_health"
down_revision: str | None = "0006_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("health_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("health_reported_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("health_reported_at")
        batch_op.drop_column("health_reason")
        batch_op.drop_column("health_status")
