"""A ``fleetconfig serve`` process told where CUE is (``FLEETCONFIG_CUE_COMMAND``, which the
test session sets for every server it starts), driven by the official Platform SDK: a CUE
schema, an instance it accepts and one it refuses."""

from __future__ import annotations

import os

import miru_platform_sdk
import pytest
from miru_platform_sdk import Miru

from tests.cue_support import cue_for_tests
from tests.support import ServerProcess, unique_name

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(cue_for_tests().command is None, reason=cue_for_tests().description),
]


def test_cue_schemas_through_the_official_client(server: ServerProcess) -> None:
    assert os.environ["FLEETCONFIG_CUE_COMMAND"] == cue_for_tests().command
    client = Miru(api_key=server.admin_key, base_url=server.base_url + "/beta")
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
