"""Config types over HTTP: every operation and every error the spec names."""

from __future__ import annotations

from tests.support import ApiCaller, assert_error


async def test_create_get_update_list(api: ApiCaller) -> None:
    created = await api.ok(
        "POST", "/config_types", json={"name": "Motion Control", "slug": "motion-control"}
    )
    assert created["object"] == "config_type"
    assert created["id"].startswith("cfg_typ_")
    assert created["slug"] == "motion-control"
    assert created["created_at"].endswith("Z")

    fetched = await api.ok("GET", f"/config_types/{created['id']}")
    assert fetched == created

    renamed = await api.ok("PATCH", f"/config_types/{created['id']}", json={"name": "Motion"})
    assert renamed["name"] == "Motion"
    assert renamed["slug"] == "motion-control"

    listed = await api.ok(
        "GET", "/config_types", params={"slug": "motion-control", "expand": "total_count"}
    )
    assert listed["total_count"] == 1
    assert [item["id"] for item in listed["data"]] == [created["id"]]


async def test_slug_and_name_are_unique(api: ApiCaller) -> None:
    await api.ok("POST", "/config_types", json={"name": "A", "slug": "a"})
    assert_error(
        await api.post("/config_types", json={"name": "B", "slug": "a"}),
        409,
        "conflict",
        reason="slug_taken",
    )
    assert_error(
        await api.post("/config_types", json={"name": "A", "slug": "b"}),
        409,
        "conflict",
        reason="name_taken",
    )


async def test_slug_is_immutable_and_validated(api: ApiCaller) -> None:
    created = await api.ok("POST", "/config_types", json={"name": "A", "slug": "a"})
    assert_error(
        await api.patch(f"/config_types/{created['id']}", json={"slug": "other"}),
        422,
        "validation_failed",
    )
    same = await api.ok("PATCH", f"/config_types/{created['id']}", json={"slug": "a"})
    assert same["slug"] == "a"
    for bad in ["-a", "a-", "A", "a_b", "", "x" * 49]:
        assert_error(
            await api.post("/config_types", json={"name": "N" + bad, "slug": bad}),
            422,
            "validation_failed",
        )
    assert_error(
        await api.post("/config_types", json={"name": "", "slug": "ok"}), 422, "validation_failed"
    )
    assert_error(
        await api.post("/config_types", json={"name": "x" * 49, "slug": "ok"}),
        422,
        "validation_failed",
    )


async def test_wrong_types_and_missing_fields_are_400(api: ApiCaller) -> None:
    assert_error(
        await api.post("/config_types", json={"name": 5, "slug": "a"}), 400, "invalid_request"
    )
    assert_error(await api.post("/config_types", json={"name": "A"}), 400, "invalid_request")
    assert_error(await api.post("/config_types", content=b"{not json"), 400, "invalid_request")
    assert_error(await api.post("/config_types", content=b"[1,2]"), 400, "invalid_request")


async def test_unknown_and_foreign_ids_are_404(api: ApiCaller, key_with) -> None:  # type: ignore[no-untyped-def]
    assert_error(await api.get("/config_types/cfg_typ_nope"), 404, "not_found")
    assert_error(
        await api.patch("/config_types/cfg_typ_nope", json={"name": "x"}), 404, "not_found"
    )
    reader = await key_with("config_types:read")
    assert_error(
        await reader.post("/config_types", json={"name": "A", "slug": "a"}), 403, "forbidden"
    )
