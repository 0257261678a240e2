"""The official client (0.9.0) sends an ``Idempotency-Key`` as an extra header: a repeat is
answered with the first answer, and the same key for another request is refused."""

from __future__ import annotations

import uuid

import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru

from tests.support import unique_name

pytestmark = pytest.mark.e2e


def test_the_official_client_with_an_idempotency_key(sdk: Miru) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    name = unique_name("robot")
    created = sdk.devices.create(name=name, extra_headers=key)
    again = sdk.devices.with_raw_response.create(name=name, extra_headers=key)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == created.id
    assert [item.id for item in sdk.devices.list(name=[name]).data] == [created.id]
    with pytest.raises(miru_platform_sdk.UnprocessableEntityError) as refused:
        sdk.devices.create(name=name + "-b", extra_headers=key)
    assert refused.value.status_code == 422
    assert sdk.devices.list(name=[name + "-b"]).data == []
