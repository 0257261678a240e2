"""The per-file unified diff (pure functions)."""

from __future__ import annotations

import pytest

from fleetconfig.server.dashboard.diff import comparable_text, diff_deployments, diff_file


def test_json_is_compared_pretty_printed_with_key_order_kept() -> None:
    text, reformatted = comparable_text('{"b":1,"a":[1,2]}')
    assert text == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert reformatted
    assert comparable_text("not json\n") == ("not json\n", False)


def test_a_changed_value_is_one_removed_and_one_added_line() -> None:
    result = diff_file(
        "/a.json", '{"x":1,"y":2}', '{"x":1,"y":3}', old_label="old", new_label="new"
    )
    assert result.change == "changed"
    assert (result.added, result.removed) == (1, 1)
    kinds = [(line.kind, line.text) for line in result.lines]
    assert kinds[:2] == [("file", "--- /a.json (old)"), ("file", "+++ /a.json (new)")]
    assert ("remove", '-  "y": 2') in kinds
    assert ("add", '+  "y": 3') in kinds
    assert ("context", '   "x": 1,') in kinds


def test_added_removed_unchanged_and_formatting_only() -> None:
    files = diff_deployments(
        {"/same": "{}", "/gone": '{"a":1}', "/fmt": '{"a": 1}'},
        {"/same": "{}", "/new": "plain\ntext\n", "/fmt": '{"a":1}'},
        old_label="o",
        new_label="n",
    )
    by_path = {file.path: file for file in files}
    assert [file.path for file in files] == ["/fmt", "/gone", "/new", "/same"]
    assert by_path["/same"].change == "unchanged" and by_path["/same"].lines == []
    assert by_path["/gone"].change == "removed" and by_path["/gone"].removed == 3
    assert by_path["/new"].change == "added" and by_path["/new"].added == 2
    assert by_path["/new"].lines[0].text == "--- /dev/null"
    assert by_path["/fmt"].change == "changed"
    assert "only formatting differs" in by_path["/fmt"].lines[0].text


def test_a_file_must_be_somewhere() -> None:
    with pytest.raises(ValueError):
        diff_file("/x", None, None, old_label="o", new_label="n")
