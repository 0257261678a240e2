"""A ``fleetconfig serve`` process told where CUE is (``FLEETCONFIG_CUE_COMMAND``), driven by
the official Platform SDK: a CUE schema, an instance it accepts and one it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru

from tests.cue_support import cue_for_tests
from tests.support import ServerProcess, backend, drop_pg_database, fresh_database_url, unique_name
from tests.support import start_server as start_server_process

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(cue_for_tests().command is None, reason=cue_for_tests().description),
]


@pytest.fixture
async def cue_server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    url = await fresh_database_url(tmp_path)
    command = cue_for_tests().command
    assert command is not None
    process = start_server_process(tmp_path / "data", url, {"FLEETCONFIG_CUE_COMMAND": command})
    yield process
    process.stop()
    if backend() == "postgresql":
        await drop_pg_database(url)


def test_cue_schemas_through_the_official_client(cue_server: ServerProcess) -> None:
    client = Miru(api_key=cue_server.admin_key, base_url=cue_server.base_url + "/beta")
    try:
        slug = unique_name("cue")
        client.config_types.create(name=slug, slug=slug)
        schema = client.config_schemas.create(
            config_type_ref={"slug": slug},
            documents=[{"name": "motion.cue", "data": "max_speed: number & <=5\n"}],
            format="cue",
            language="cue",
        )
        assert schema.language == "cue"
        instance = client.config_instances.create(
            config_schema_id=schema.id, content={"format": "json", "data": '{"max_speed": 4}'}
        )
        assert instance.config_schema_id == schema.id
        with pytest.raises(miru_platform_sdk.UnprocessableEntityError) as refused:
            client.config_instances.create(
                config_schema_id=schema.id, content={"format": "json", "data": '{"max_speed": 6}'}
            )
        assert "out of bound" in str(refused.value.body)
    finally:
        client.close()
