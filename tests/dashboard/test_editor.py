"""The config editor: validation as you type (the server's own rules), creating an instance,
and deploying it through the deployment rules."""

from __future__ import annotations

import json
import re

from tests.dashboard.conftest import (
    Browser,
    BrowserFactory,
    Fleet,
    KeyFactory,
    make_instance,
    make_release,
    make_schema,
    stage,
)
from tests.support import ApiCaller


async def test_the_editor_lists_schemas_and_opens_on_the_newest_instance(
    browser: Browser, fleet: Fleet
) -> None:
    index = await browser.get("/editor")
    assert index.status_code == 200
    assert f'href="/editor/{fleet.schema["id"]}"' in index.text
    page = await browser.get(f"/editor/{fleet.schema['id']}")
    assert page.status_code == 200
    assert 'hx-trigger="keyup changed delay:300ms, change, load"' in page.text
    assert f'hx-post="/editor/{fleet.schema["id"]}/validate"' in page.text
    textarea = re.search(r'<textarea name="data"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert textarea is not None
    assert json.loads(textarea.group(1).replace("&#34;", '"')) == {"max_speed": 2.5, "mode": "fast"}
    # The schema is shown beside the editor.
    assert "additionalProperties" in page.text
    older = await browser.get(
        f"/editor/{fleet.schema['id']}", params={"instance": fleet.instances[0]["id"]}
    )
    assert "1.5" in older.text
    missing = await browser.get(
        f"/editor/{fleet.schema['id']}", params={"instance": "cfg_inst_nope"}
    )
    assert missing.status_code == 404


async def test_validation_as_you_type_lists_problems_with_paths(
    browser: Browser, fleet: Fleet
) -> None:
    path = f"/editor/{fleet.schema['id']}/validate"
    broken = await browser.post(path, {"data": '{"max_speed": 9'})
    assert broken.status_code == 200
    assert 'data-valid="false"' in broken.text
    assert "not valid JSON: invalid JSON at line 1 column 16" in broken.text

    invalid = await browser.post(path, {"data": '{"max_speed": 9, "mode": "warp"}'})
    assert "2 problems" in invalid.text
    assert "<code>/max_speed</code> 9 is greater than the maximum of 5" in invalid.text
    assert "<code>/mode</code> &#39;warp&#39; is not one of" in invalid.text

    duplicate = await browser.post(path, {"data": '{"max_speed": 1, "max_speed": 2}'})
    assert "duplicate key" in duplicate.text

    valid = await browser.post(path, {"data": '{"max_speed": 4}'})
    assert 'data-valid="true"' in valid.text
    assert "Valid against the schema" in valid.text

    unsigned = await browser.post(path, {"data": "{}"}, csrf="")
    assert unsigned.status_code == 403


async def test_create_an_instance_then_deploy_it(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    schema_id = fleet.schema["id"]
    refused = await browser.post(f"/editor/{schema_id}/instances", {"data": '{"max_speed": 50}'})
    assert refused.status_code == 422
    assert "<code>/max_speed</code>" in refused.text

    created = await browser.post(f"/editor/{schema_id}/instances", {"data": '{"max_speed": 3}'})
    assert created.status_code == 200, created.text
    instance_id = re.search(r"<code>(cfg_inst_\w+)</code>", created.text)
    assert instance_id is not None
    stored = await api.ok(
        "GET", f"/config_instances/{instance_id.group(1)}", params={"expand": "content"}
    )
    assert stored["content"]["data"] == '{"max_speed": 3}'
    # The deploy form comes with it: the device and a release that includes the schema.
    assert f'name="instance_id" value="{instance_id.group(1)}"' in created.text
    assert f'<option value="{fleet.release["id"]}" selected>' in created.text

    device_id = fleet.devices[1]["id"]
    deployed = await browser.post(
        f"/editor/{schema_id}/deploy",
        {
            "instance_id": instance_id.group(1),
            "device_id": device_id,
            "release_id": fleet.release["id"],
            "target_status": "deployed",
        },
    )
    assert deployed.status_code == 200, deployed.text
    # No agent runs here: the deployment is queued, and the page does not call it deployed.
    assert "Sent to the device (it is not there yet)" in deployed.text
    assert "Deployed" not in deployed.text
    deployment_id = re.search(r"<code>(dpl_\w+)</code>", deployed.text)
    assert deployment_id is not None
    after = await api.ok(
        "GET", f"/deployments/{deployment_id.group(1)}", params={"expand": "config_instances"}
    )
    assert after["target_status"] == "deployed"
    assert after["device_id"] == device_id
    assert [i["id"] for i in after["config_instances"]] == [instance_id.group(1)]


async def test_deploying_to_a_device_on_another_release_explains_what_to_do(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    device_id = fleet.devices[0]["id"]
    await stage(api, fleet, device_id, target_status="deployed")
    newer = await make_release(api, [fleet.schema["id"]])
    form = {
        "instance_id": fleet.instances[1]["id"],
        "device_id": device_id,
        "release_id": newer["id"],
        "target_status": "deployed",
    }
    refused = await browser.post(
        f"/editor/{fleet.schema['id']}/deploy", form, headers={"X-Error-Target": "#deploy-result"}
    )
    assert refused.status_code == 409
    assert refused.headers["hx-retarget"] == "#deploy-result"
    assert "release_mismatch" in refused.text
    assert "Stage this deployment instead" in refused.text

    staged = await browser.post(
        f"/editor/{fleet.schema['id']}/deploy", {**form, "target_status": "staged"}
    )
    assert staged.status_code == 200, staged.text
    assert "Staged" in staged.text
    assert f'href="/releases/{newer["id"]}"' in staged.text


async def test_other_schemas_default_to_what_the_device_runs(
    browser: Browser, api: ApiCaller, fleet: Fleet
) -> None:
    extra_schema = await make_schema(api, {"type": "object"})
    running = await make_instance(api, extra_schema["id"], {"led": "blue"})
    await make_instance(api, extra_schema["id"], {"led": "newest"})
    both = await make_release(api, [fleet.schema["id"], extra_schema["id"]])
    device_id = fleet.devices[0]["id"]
    await api.ok(
        "POST",
        "/deployments",
        json={
            "target_status": "deployed",
            "description": "now",
            "device_id": device_id,
            "release_id": both["id"],
            "config_instance_ids": [fleet.instances[0]["id"], running["id"]],
        },
    )
    form = await browser.get(
        f"/editor/{fleet.schema['id']}/deploy-form",
        params={
            "instance_id": fleet.instances[1]["id"],
            "device_id": device_id,
            "release_id": both["id"],
        },
        htmx=True,
    )
    assert form.status_code == 200, form.text
    assert f'name="instance:{extra_schema["id"]}"' in form.text
    assert f'<option value="{running["id"]}" title="{running["id"]}" selected>' in form.text

    deployed = await browser.post(
        f"/editor/{fleet.schema['id']}/deploy",
        {
            "instance_id": fleet.instances[1]["id"],
            "device_id": device_id,
            "release_id": both["id"],
            f"instance:{extra_schema['id']}": running["id"],
            "target_status": "deployed",
        },
    )
    assert deployed.status_code == 200, deployed.text


async def test_a_read_only_key_can_check_but_not_create(
    new_browser: BrowserFactory, key_with: KeyFactory, fleet: Fleet
) -> None:
    reader = await key_with("config_schemas:read", "config_instances:read")
    person = await new_browser()
    await person.sign_in(reader.key)
    page = await person.get(f"/editor/{fleet.schema['id']}")
    assert "not create config instances" in page.text
    checked = await person.post(f"/editor/{fleet.schema['id']}/validate", {"data": "{}"})
    assert "<code>/</code>" in checked.text and "max_speed" in checked.text
    refused = await person.post(
        f"/editor/{fleet.schema['id']}/instances", {"data": '{"max_speed": 1}'}
    )
    assert refused.status_code == 403
    assert "config_instances:write" in refused.text
