"""Finding and reading annotated schema files (no server, no git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetconfig.cli.schema_files import SchemaFileError, collect, name_from_slug, read_schema_files
from tests.cli.conftest import json_schema, yaml_schema


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reads_json_and_yaml_with_their_annotations(tmp_path: Path) -> None:
    write(
        tmp_path / "schemas" / "motion.json",
        json_schema("motion-control", instance_filepath="/etc/robot//motion.json"),
    )
    write(
        tmp_path / "schemas" / "nested" / "loc.yml", yaml_schema("localization", name="Where Am I")
    )
    paths = collect([tmp_path / "schemas"], [])
    schemas = read_schema_files(paths, tmp_path)

    by_slug = {schema.config_type_slug: schema for schema in schemas}
    motion, localization = by_slug["motion-control"], by_slug["localization"]
    assert motion.relative_path == "schemas/motion.json"
    assert motion.format == "json"
    assert motion.config_type_name == "Motion Control"
    assert motion.instance_filepath == "/etc/robot/motion.json"  # normalised
    assert motion.text == (tmp_path / "schemas" / "motion.json").read_text()  # uploaded as written
    assert localization.relative_path == "schemas/nested/loc.yml"
    assert localization.format == "yaml"
    assert localization.config_type_name == "Where Am I"
    assert localization.instance_filepath is None
    # Everglades' default: a YAML schema's instances are YAML files.
    assert localization.effective_instance_filepath == "/srv/miru/configs/localization.yaml"
    assert localization.instance_slots is None
    assert motion.instance_slots == (
        {
            "key": "default",
            "name": "Default",
            "filepath": "/etc/robot/motion.json",
            "required": True,
        },
    )
    assert localization.text.startswith("# Where the robot thinks it is")


def test_collect_takes_files_and_directories_once_and_skips_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    one = write(tmp_path / "s" / "a.json", json_schema("a"))
    write(tmp_path / "s" / "b.yaml", yaml_schema("b"))
    write(tmp_path / "s" / "notes.txt", "not a schema")
    write(tmp_path / "s" / ".cache" / "c.json", "{}")
    paths = collect([tmp_path / "s"], [one])
    assert [path.name for path in paths] == ["a.json", "b.yaml"]


@pytest.mark.parametrize(
    ("directories", "files", "expected"),
    [
        (["missing"], [], "not a directory"),
        (["empty"], [], "no .json, .yaml or .yml files"),
        ([], ["missing.json"], "no such file"),
        ([], ["notes.txt"], "not a .json, .yaml or .yml file"),
    ],
)
def test_collect_refuses_what_it_cannot_find(
    tmp_path: Path, directories: list[str], files: list[str], expected: str
) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "notes.txt", "x")
    with pytest.raises(SchemaFileError) as raised:
        collect([tmp_path / item for item in directories], [tmp_path / item for item in files])
    assert any(expected in line for line in raised.value.details)


def test_an_unannotated_schema_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "plain.json", json_schema(None))
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files([tmp_path / "plain.json"], tmp_path)
    text = "\n".join([raised.value.message, *raised.value.details])
    assert "plain.json: not annotated with x-miru-config-type" in text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (json_schema("Motion_Control"), "x-miru-config-type must be a slug"),
        (json_schema("-motion"), "x-miru-config-type must be a slug"),
        (json_schema("m" * 49), "x-miru-config-type must be a slug"),
        (json.dumps({"x-miru-config-type": 7}), "x-miru-config-type must be a slug"),
        (json_schema("motion", config_type_name=""), "x-miru-config-type-name must be a text"),
        (
            json_schema("motion", instance_filepath="relative/motion.json"),
            "must be an absolute path",
        ),
        (
            json_schema("motion", instance_filepath="/srv/../etc/passwd"),
            "must not contain a '..' segment",
        ),
        (json_schema("motion", instance_filepath="/srv/configs/"), "must name a file"),
        ("[1, 2]", "must be an object at the top level"),
        ("{not json", "cannot be parsed as JSON"),
    ],
)
def test_invalid_annotations_and_documents_are_refused(
    tmp_path: Path, content: str, expected: str
) -> None:
    write(tmp_path / "schema.json", content)
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files([tmp_path / "schema.json"], tmp_path)
    assert expected in "\n".join([raised.value.message, *raised.value.details])


def test_yaml_must_hold_exactly_one_document(tmp_path: Path) -> None:
    write(tmp_path / "two.yaml", yaml_schema("a") + "---\n" + yaml_schema("b"))
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files([tmp_path / "two.yaml"], tmp_path)
    assert "exactly one document" in "\n".join(raised.value.details)


def test_every_bad_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path / "a.json", json_schema(None))
    write(tmp_path / "b.json", "{")
    write(tmp_path / "c.json", json_schema("fine"))
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files(collect([tmp_path], []), tmp_path)
    details = "\n".join(raised.value.details)
    assert "a.json" in details and "b.json" in details and "c.json" not in details


def test_two_schemas_for_one_config_type_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.json", json_schema("motion", instance_filepath="/a.json"))
    write(tmp_path / "b.yaml", yaml_schema("motion"))
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files(collect([tmp_path], []), tmp_path)
    assert "config type 'motion' has 2 schemas: a.json, b.yaml" in raised.value.details


def test_two_schemas_writing_one_file_are_refused(tmp_path: Path) -> None:
    write(
        tmp_path / "a.json",
        json_schema("motion", instance_filepath="/srv/miru/configs/shared.json"),
    )
    write(tmp_path / "b.json", json_schema("shared"))  # its default path is the same file
    with pytest.raises(SchemaFileError) as raised:
        read_schema_files(collect([tmp_path], []), tmp_path)
    assert any(
        "/srv/miru/configs/shared.json is written by 2 schemas" in line
        for line in raised.value.details
    )


def test_name_from_slug() -> None:
    assert name_from_slug("motion-control") == "Motion Control"
    assert name_from_slug("lidar2") == "Lidar2"
    assert len(name_from_slug("a-" * 40 + "b")) <= 48
