"""The server's long-lived parts, built once by :func:`~fleetconfig.server.app.create_app`.

One typed object instead of loose ``app.state`` attributes, so that the import graph and the
type checker see, for instance, the route from a deployment write to the push hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    # Types only: the parts import this module (for :func:`services`), not the reverse.
    from fleetconfig.server.auth.cache import Authenticator
    from fleetconfig.server.auth.signing import SigningKeys
    from fleetconfig.server.deployments.reports import ReportQueue
    from fleetconfig.server.kit.db import Database
    from fleetconfig.server.kit.rate_limit import RateLimiter
    from fleetconfig.server.push.hub import PushHub
    from fleetconfig.server.rollouts.engine import RolloutEngine
    from fleetconfig.server.settings import Settings
    from fleetconfig.server.webhooks.worker import WebhookWorker


@dataclass(frozen=True)
class AppServices:
    settings: Settings
    database: Database
    push: PushHub
    signing_keys: SigningKeys
    authenticator: Authenticator
    rate_limiter: RateLimiter
    reports: ReportQueue
    rollouts: RolloutEngine
    # None when the settings turn delivery off in this process (the outbox still fills).
    webhooks: WebhookWorker | None = None


def services(request: Request) -> AppServices:
    found: AppServices = request.app.state.services
    return found
