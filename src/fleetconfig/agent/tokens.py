"""Session tokens: exchanged for device-signed assertions, refreshed before they expire.

A token is used until 15 minutes before its ``expires_at``, then replaced; a 401 from the
server drops it at once (``invalidate``), so the next call exchanges a new one. Concurrent
callers share one exchange. The token lives only in memory: a restarted agent signs a new
assertion, which costs one request and keeps no bearer secret on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fleetconfig.agent.clock import utcnow
from fleetconfig.agent.keys import DeviceKey
from fleetconfig.agent.server_link import SessionToken

REFRESH_BEFORE_EXPIRY = timedelta(minutes=15)

Exchange = Callable[[str], Awaitable[SessionToken]]


class SessionTokens:
    """A ``TokenSource``: the current session token, refreshed as needed."""

    def __init__(
        self,
        exchange: Exchange,
        key: DeviceKey,
        *,
        clock: Callable[[], datetime] = utcnow,
        refresh_before: timedelta = REFRESH_BEFORE_EXPIRY,
    ) -> None:
        self.exchange = exchange
        self.key = key
        self.clock = clock
        self.refresh_before = refresh_before
        self._current: SessionToken | None = None
        self._issued_at = clock()
        self._lock = asyncio.Lock()
        self.exchanges = 0

    def _usable(self, token: SessionToken | None) -> bool:
        if token is None:
            return False
        refresh_at = self._refresh_at(token)
        return self.clock() < refresh_at

    def _refresh_at(self, token: SessionToken) -> datetime:
        lifetime = token.expires_at - self._issued_at
        if lifetime <= self.refresh_before * 2:
            # A short-lived token (a server configured so) is replaced halfway through.
            return self._issued_at + lifetime / 2
        return token.expires_at - self.refresh_before

    @property
    def refresh_at(self) -> datetime | None:
        """When the current token is due for replacement (``None``: no token yet)."""
        return None if self._current is None else self._refresh_at(self._current)

    async def token(self) -> str:
        current = self._current
        if current is not None and self._usable(current):
            return current.token
        async with self._lock:
            if self._current is None or not self._usable(self._current):
                self._issued_at = self.clock()
                self._current = await self.exchange(self.key.assertion())
                self.exchanges += 1
            return self._current.token

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: forget it (unless a newer one already replaced it)."""
        if self._current is not None and self._current.token == token:
            self._current = None
