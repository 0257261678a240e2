"""Running out of file descriptors is a capacity limit: a 503 with Retry-After, not a 500."""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from fleetconfig.server.app import create_app
from fleetconfig.server.kit.limits import out_of_descriptors
from fleetconfig.server.settings import Settings
from tests.support import assert_error


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """This process at its descriptor limit for real: the soft limit lowered to what is open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
    held: list[int] = []
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_real_errors_of_an_exhausted_process_are_recognised(tmp_path: Path) -> None:
    with descriptors_exhausted():
        with pytest.raises(OSError) as opening:
            open(tmp_path / "f", "w")  # noqa: SIM115
        with pytest.raises(sqlite3.OperationalError) as connecting:
            sqlite3.connect(tmp_path / "db.sqlite").execute("SELECT 1")
        assert out_of_descriptors(opening.value)
        assert out_of_descriptors(connecting.value)
        # As SQLAlchemy hands it on: wrapped, the driver's error as ``orig``.
        wrapped = OperationalError("SELECT 1", {}, connecting.value)
        assert out_of_descriptors(wrapped)
    # With descriptors to spare, the same SQLite message is a real error.
    assert not out_of_descriptors(sqlite3.OperationalError("unable to open database file"))
    assert not out_of_descriptors(ValueError("boom"))
    chained = RuntimeError("while connecting")
    chained.__cause__ = opening.value
    assert out_of_descriptors(chained)


async def test_an_exhausted_server_answers_503_with_retry_after(
    database_url: str, tmp_path: Path
) -> None:
    async def needs_a_descriptor() -> None:
        raise OSError(24, "Too many open files")

    # An application of its own: the shared one must not grow a route.
    app = create_app(Settings(data_dir=tmp_path, database_url=database_url))
    app.router.add_api_route("/healthz/descriptors", needs_a_descriptor)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        response = await client.get("/healthz/descriptors")
    assert_error(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
