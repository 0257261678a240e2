"""fleet truth: why a deployment is retrying or failed, and files changed on the robot

Revision ID: 0005_fleet_truth
Revises: 0004_api_versions
Create Date: 2026-12-02 02:00:00

Columns only (existing rows keep their values; the new ones start empty):

- ``error_path``, ``error_attempts``, ``error_next_retry_at``: the agent's detail of its
  error, beside the existing ``error_message``; ``error_since``: when the current error
  began (the fleet chart counts retrying deployments from then);
- ``file_changes``: the files of the deployment the agent found changed or missing on the
  robot (which, how, when, whether it restored them); ``modified_at``: the newest of them
  (the fleet list filters on it).

Two indexes serve the fleet view: a device's latest deployment (``device_id, targeted_at``)
and a release's deployments by target (``release_id, target_status``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_fleet_truth"
down_revision: str | None = "0004_api_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("error_attempts", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("error_next_retry_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("error_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("file_changes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("modified_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_deployments_release_target", ["release_id", "target_status"])
        batch_op.create_index("ix_deployments_device_targeted", ["device_id", "targeted_at"])
    # Failing deployments already recorded: their error began no later than their last change.
    op.execute("UPDATE deployments SET error_since = updated_at WHERE error_status != 'none'")


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_device_targeted")
        batch_op.drop_index("ix_deployments_release_target")
        for column in (
            "modified_at",
            "file_changes",
            "error_since",
            "error_next_retry_at",
            "error_attempts",
            "error_path",
        ):
            batch_op.drop_column(column)
