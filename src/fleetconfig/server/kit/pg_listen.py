"""A PostgreSQL connection of its own, listening on a channel, held for the process's life.

The push relay and the API-key watch both need one: connect, ``LISTEN``, notice a lost
connection at once (asyncpg's termination listener), and reconnect with jittered exponential
backoff whatever went wrong. What each does while connected is its ``serve`` coroutine; it
returns or raises when the connection is no longer good.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg
from sqlalchemy.engine import make_url

FIRST_DELAY_SECONDS = 0.2

Serve = Callable[[asyncpg.Connection, asyncio.Event], Awaitable[None]]


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg://...``) as a plain libpq-style DSN."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def hold_listening_connection(
    *,
    dsn: str,
    application_name: str,
    channel: str,
    on_notification: Callable[..., None],
    serve: Serve,
    on_lost: Callable[[], None],
    max_backoff_seconds: float,
    logger: logging.Logger,
) -> NoReturn:
    """Run until cancelled: connect, listen on ``channel``, then ``serve(connection, lost)``
    (``lost`` is set the moment the connection drops, after ``on_lost()`` ran)."""
    delay = FIRST_DELAY_SECONDS
    while True:
        connection: asyncpg.Connection | None = None
        lost = asyncio.Event()

        def dropped(_connection: Any, lost: asyncio.Event = lost) -> None:
            on_lost()
            lost.set()

        try:
            connection = await asyncpg.connect(
                dsn,
                timeout=10,
                # Named, so an operator can tell these connections apart in pg_stat_activity.
                server_settings={"application_name": application_name},
            )
            connection.add_termination_listener(dropped)
            await connection.add_listener(channel, on_notification)
            delay = FIRST_DELAY_SECONDS
            await serve(connection, lost)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("PostgreSQL connection problem (%s): %s", application_name, error)
        finally:
            on_lost()
            if connection is not None and not connection.is_closed():
                try:
                    async with asyncio.timeout(2):
                        await connection.close()
                except BaseException:
                    connection.terminate()
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_backoff_seconds)
