"""The unit of work runs after-commit effects only once the commit succeeded, and a failing
effect never fails the request whose change is saved."""

from __future__ import annotations

from typing import Any

import pytest

from fleetconfig.server.kit.unit_of_work import UnitOfWork


class FakeSession:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.commits = 0

    async def commit(self) -> None:
        if self.fail:
            raise RuntimeError("commit refused")
        self.commits += 1


async def test_effects_run_after_commit_in_order_and_once() -> None:
    session = FakeSession()
    work = UnitOfWork(session=session)  # type: ignore[arg-type]
    seen: list[Any] = []

    async def effect(name: str) -> None:
        seen.append((name, session.commits))

    work.on_commit(lambda: effect("first"))
    work.on_commit(lambda: effect("second"))
    await work.commit()
    await work.commit()
    assert seen == [("first", 1), ("second", 1)]


async def test_no_effect_when_the_commit_fails() -> None:
    work = UnitOfWork(session=FakeSession(fail=True))  # type: ignore[arg-type]
    seen: list[str] = []

    async def effect() -> None:
        seen.append("ran")

    work.on_commit(effect)
    with pytest.raises(RuntimeError):
        await work.commit()
    assert seen == []


async def test_a_failing_effect_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = UnitOfWork(session=FakeSession())  # type: ignore[arg-type]
    seen: list[str] = []

    async def broken() -> None:
        raise ConnectionError("broker down")

    async def fine() -> None:
        seen.append("fine")

    work.on_commit(broken)
    work.on_commit(fine)
    await work.commit()
    assert seen == ["fine"]
    assert "after-commit effect failed" in caplog.text
