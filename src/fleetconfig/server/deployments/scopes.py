"""Which scopes each change of a deployment needs: one rule for the API and the dashboard.

Making a deployment the device's target needs ``deployments:deploy``; planning one (staged,
or a drifted one restaged) needs ``deployments:stage``; ``deployments:archive`` archives.
Creating one needs ``deployments:write`` as well.
"""

from __future__ import annotations

from fleetconfig.server.deployments.lifecycle import TargetStatus

ACTION_SCOPES = {
    "deploy": "deployments:deploy",
    "archive": "deployments:archive",
    "restage": "deployments:stage",
}


def creating(target_status: str) -> tuple[tuple[str], tuple[str]]:
    """The scope groups creating a deployment with this target status needs (both)."""
    moving = "deployments:deploy" if target_status == TargetStatus.DEPLOYED else "deployments:stage"
    return ("deployments:write",), (moving,)
