"""The fast lane: a few hot operations served without the framework's routing and dependencies.

A rollout makes every agent of a fleet call one operation (its status report) within the same
second. For a request that small, FastAPI's route scan, dependency solving and exception
middleware cost more than the work itself (decision 0007). This ASGI middleware answers the
operations it is given — an exact method and path — by calling their endpoint function
directly with a plain Starlette :class:`~starlette.requests.Request`; every other request goes
on to the application. The endpoint functions are the same ones the application routes (and
documents in its OpenAPI document), so both ways in behave alike.

It sits inside :class:`~fleetconfig.server.kit.middleware.APIMiddleware` (request id, version
echo, body limit) and renders :class:`~fleetconfig.server.kit.errors.APIError` as the
application does; anything unexpected propagates to the application's 500 handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetconfig.server.kit.errors import APIError

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[Request, APIError], Response]


class FastLane:
    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Endpoint],
        render_error: ErrorRenderer,
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except APIError as error:
            response = self.render_error(request, error)
        await response(scope, receive, send)
