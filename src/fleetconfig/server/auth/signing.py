"""The server's token-signing secret, stored in the database so every process shares it."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.kit.db import Database
from fleetconfig.server.models import ServerSecret

TOKEN_SIGNING_KEY = "token_signing_key"


async def _load_or_create(session: AsyncSession, name: str) -> str:
    row = await session.get(ServerSecret, name)
    if row is not None:
        return row.value
    value = secrets.token_urlsafe(48)
    session.add(ServerSecret(name=name, value=value))
    try:
        await session.commit()
    except IntegrityError:
        # Another process created it first: use theirs.
        await session.rollback()
        row = await session.get(ServerSecret, name)
        assert row is not None
        return row.value
    return value


class SigningKeys:
    """The signing secret, loaded once at start-up (before any request holds a transaction)."""

    def __init__(self) -> None:
        self._token_key: str | None = None

    async def load(self, database: Database) -> None:
        async with database.session(write=True) as session:
            self._token_key = await _load_or_create(session, TOKEN_SIGNING_KEY)

    @property
    def token_key(self) -> str:
        if self._token_key is None:
            raise RuntimeError("signing keys are loaded at application start-up")
        return self._token_key
