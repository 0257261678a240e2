"""The pure rules of schemas and instances: file paths, digests, strict parsing, JSON Schema
checks, the validator cache, and the download header."""

from __future__ import annotations

import hashlib
import re

import pytest

from fleetconfig.server.config_instances.endpoints import content_disposition
from fleetconfig.server.config_schemas import cue
from fleetconfig.server.config_schemas.documents import DocumentError, parse_json, parse_yaml
from fleetconfig.server.config_schemas.jsonschema_rules import (
    SchemaProblems,
    ValidatorCache,
    check_schema,
    compile_validator,
    instance_errors,
    pointer,
)
from fleetconfig.server.config_schemas.rules import (
    canonical_json,
    check_document_count,
    check_language_format,
    cue_digest,
    default_instance_filepath,
    json_schema_digest,
    normalize_instance_filepath,
    text_problem,
)
from fleetconfig.server.kit.errors import SchemaLanguageUnavailable, ValidationFailed
from tests.cue_support import cue_for_tests


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("/a/b.json", "/a/b.json"),
        ("/a//b.json", "/a/b.json"),
        ("/a/./b.json", "/a/b.json"),
        ("//a/b.json", "/a/b.json"),
        ("///a/b.json", "/a/b.json"),
        ("/a b/ü.json", "/a b/ü.json"),
        ("/.hidden", "/.hidden"),
        ("/a/...", "/a/..."),
    ],
)
def test_instance_filepaths_are_normalised(given: str, normalised: str) -> None:
    assert normalize_instance_filepath(given) == normalised


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("a/b.json", "absolute"),
        ("./b.json", "absolute"),
        ("/a/../b.json", r"'\.\.'"),
        ("/..", r"'\.\.'"),
        ("/a/", "file"),
        ("/a/.", "file"),
        ("/", "file"),
        ("/a\x00b", "NUL"),
        ("/a\nb", "control"),
        ("/a\x7fb", "control"),
        ("/" + "x" * 256, "segment"),
        ("/" + "é" * 128, "segment"),
        ("/" + "a/" * 520 + "b", "bytes"),
        ("/\ud800", "surrogate"),
    ],
)
def test_bad_instance_filepaths(given: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        normalize_instance_filepath(given)
    (item,) = raised.value.params["errors"]
    assert item["path"] == "/instance_filepath"
    assert re.search(reason, item["message"])


def test_default_instance_filepath() -> None:
    assert default_instance_filepath("motion-control") == "/srv/miru/configs/motion-control.json"


def test_language_format_and_document_count() -> None:
    check_language_format("jsonschema", "json")
    check_language_format("jsonschema", "yaml")
    check_language_format("cue", "cue")
    for language, format in (("jsonschema", "cue"), ("cue", "json"), ("cue", "yaml")):
        with pytest.raises(ValidationFailed):
            check_language_format(language, format)
    check_document_count("jsonschema", 1)
    check_document_count("cue", 1)
    check_document_count("cue", 3)
    for language, count in (("jsonschema", 0), ("jsonschema", 2), ("cue", 0), ("cue", 101)):
        with pytest.raises(ValidationFailed):
            check_document_count(language, count)


def test_text_problems() -> None:
    assert text_problem("plain ✓ text\n") is None
    assert text_problem("a\x00b") is not None
    assert text_problem("a\udc80b") is not None


def test_json_schema_digest_is_over_canonical_json() -> None:
    value = {"b": [1, 2.5, "é"], "a": {"y": None, "x": True}}
    assert canonical_json(value) == '{"a":{"x":true,"y":null},"b":[1,2.5,"é"]}'.encode()
    expected = "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
    assert json_schema_digest(value) == expected
    from_json = parse_json('{ "a": {"x": true, "y": null},\n "b": [1, 2.5, "\\u00e9"] }')
    from_yaml = parse_yaml("# comment\nb: [1, 2.5, é]\na:\n  y: null\n  x: yes\n")
    assert json_schema_digest(from_json) == json_schema_digest(from_yaml) == expected
    assert json_schema_digest({"a": 1}) != json_schema_digest({"a": 1.0})


def test_cue_digest() -> None:
    one = "package motion\n\nmax: number\n"
    assert cue_digest([one]) == "sha256:" + hashlib.sha256(one.encode()).hexdigest()
    assert cue_digest([one]) != cue_digest([one + " "])
    two = "package motion\n\nmode: string\n"
    listing = "".join(sorted(hashlib.sha256(d.encode()).hexdigest() + "\n" for d in (one, two)))
    assert cue_digest([one, two]) == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert cue_digest([one, two]) == cue_digest([two, one])
    assert cue_digest([one, two]) != cue_digest([one, two + "\n"])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "line 1"),
        ("{", "invalid JSON"),
        ('{"a": NaN}', "NaN"),
        ("[Infinity]", "Infinity"),
        ("1e999", "too large"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"x": {"a": 1, "a": 1}}', "duplicate"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("\ufeff{}", "invalid JSON"),
    ],
)
def test_strict_json(text: str, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_json(text)


def test_json_values() -> None:
    assert parse_json(' {"a": [1, 2.5, "x", null, true]} ') == {"a": [1, 2.5, "x", None, True]}
    assert parse_json("12345678901234567890") == 12345678901234567890


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "exactly one YAML document, found 0"),
        ("a: 1\n---\nb: 2\n", "found 2"),
        ("a: [1\n", "invalid YAML at line"),
        ("a: 1\na: 2\n", "duplicate key"),
        ("1: x\n", "not a string"),
        ("yes: x\n", "yes/no"),
        ("a: .nan\n", "not a JSON number"),
        ("a: !!binary aGVsbG8=\n", "bytes"),
        ("a: !!set {x, y}\n", "set"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("&a [*a]\n", "more than"),
    ],
)
def test_strict_yaml(text: str, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_yaml(text)


def test_yaml_values() -> None:
    assert parse_yaml("d: 2024-01-01\nt: 2024-01-01T10:00:00Z\n") == {
        "d": "2024-01-01",
        "t": "2024-01-01T10:00:00Z",
    }
    merged = parse_yaml("base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n")
    assert merged["child"] == {"x": 1, "y": 3}
    assert parse_yaml("null\n") is None


def test_yaml_alias_bombs_are_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    with pytest.raises(DocumentError, match="more than"):
        parse_yaml("\n".join(lines) + "\n")


def test_pointer_escapes() -> None:
    assert pointer([]) == ""
    assert pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"


def problems(schema: object) -> list[dict[str, str]]:
    try:
        check_schema(schema)
    except SchemaProblems as error:
        return error.errors
    return []


def test_valid_schemas() -> None:
    assert problems(True) == []
    assert problems({}) == []
    assert problems({"type": "object", "properties": {"default": {"type": "string"}}}) == []
    assert problems({"properties": {"a": {"type": "integer", "default": 3}}}) == []
    assert (
        problems({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"default": 1}]})
        == []
    )
    assert problems({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}) == []
    assert (
        problems(
            {
                "$defs": {"n": {"type": "integer"}},
                "properties": {"a": {"$ref": "#/$defs/n", "default": 1}},
            }
        )
        == []
    )
    assert (
        problems(
            {
                "$id": "https://example.com/s",
                "$defs": {"n": {"type": "integer"}},
                "$ref": "#/$defs/n",
            }
        )
        == []
    )
    # A nested $id changes the base of the references inside it.
    nested = {
        "$id": "https://example.com/root",
        "$defs": {
            "sub": {
                "$id": "sub",
                "$defs": {"i": {"type": "integer"}},
                "properties": {"q": {"$ref": "#/$defs/i", "default": 2}},
            }
        },
    }
    assert problems(nested) == []


def test_invalid_schemas() -> None:
    assert [p["path"] for p in problems({"type": "strnig"})] == ["/type"]
    assert [p["path"] for p in problems({"pattern": "("})] == ["/pattern"]
    assert [p["path"] for p in problems({"patternProperties": {"[": {}}})] == ["/patternProperties"]
    assert [p["path"] for p in problems({"$schema": 3})] == ["/$schema"]
    assert [p["path"] for p in problems({"$schema": "https://example.com/x"})] == ["/$schema"]
    assert [p["path"] for p in problems(None)] == [""]
    assert [p["path"] for p in problems({"$ref": "other.json"})] == ["/$ref"]
    assert [p["path"] for p in problems({"$ref": "#/$defs/missing"})] == ["/$ref"]
    many = problems(
        {
            "properties": {
                "a": {"maximum": 1, "default": 2},
                "b": {"type": "array", "items": {"type": "string"}, "default": [1, "x", 2]},
                "c": {"anyOf": [{"type": "string", "default": 5}]},
            },
            "$defs": {"d": {"enum": [1], "default": 2}},
        }
    )
    assert [p["path"] for p in many] == [
        "/$defs/d/default",
        "/properties/a/default",
        "/properties/b/default",
        "/properties/b/default",
        "/properties/c/anyOf/0/default",
    ]


def test_instance_errors_list_everything_sorted() -> None:
    validator = compile_validator(
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b/c": {"maximum": 1}},
            "required": ["z"],
        }
    )
    errors, count = instance_errors(validator, {"a": "x", "b/c": 4})
    assert count == 3
    assert [e["path"] for e in errors] == ["", "/a", "/b~1c"]
    assert instance_errors(validator, {"z": 1}) == ([], 0)
    # Long messages (which quote the instance) are shortened.
    long_errors, _ = instance_errors(compile_validator({"type": "string"}), list(range(1000)))
    assert len(long_errors[0]["message"]) <= 500


def test_validator_cache_evicts_least_recently_used() -> None:
    cache = ValidatorCache(max_size=2)
    a, b, c = (compile_validator({"const": n}) for n in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recently used
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a and cache.get("c") is c
    assert len(cache) == 2


@pytest.mark.parametrize(
    ("disposition", "filepath", "header"),
    [
        ("inline", "/srv/miru/configs/motion.json", 'inline; filename="motion.json"'),
        ("attachment", "/a/b c.json", 'attachment; filename="b c.json"'),
        (
            "inline",
            '/a/q"x\\.json',
            "inline; filename=\"q_x_.json\"; filename*=UTF-8''q%22x%5C.json",
        ),
        ("inline", "/a/é.json", "inline; filename=\"_.json\"; filename*=UTF-8''%C3%A9.json"),
    ],
)
def test_content_disposition(disposition: str, filepath: str, header: str) -> None:
    assert content_disposition(disposition, filepath) == header
    header.encode("latin-1")


def test_cue_error_output_is_split_and_names_restored() -> None:
    output = (
        "max_speed: invalid value 9 (out of bound <=5):\n"
        "    ./document0.cue:3:12\n"
        "    ./instance.json:1:14\n"
        'wheels.front."radius": conflicting values 1 and "x":\n'
        "    ./document1.cue:2:1\n"
    )
    errors = cue._errors_from_output(
        output,
        {"document0.cue": "limits.cue", "document1.cue": "wheels.cue", "instance.json": "instance"},
    )
    assert errors == [
        {
            "path": "/max_speed",
            "message": "max_speed: invalid value 9 (out of bound <=5): "
            "limits.cue:3:12 instance:1:14",
        },
        {
            "path": "/wheels/front/radius",
            "message": 'wheels.front."radius": conflicting values 1 and "x": wheels.cue:2:1',
        },
    ]
    assert cue._errors_from_output("", {}) == [{"path": "", "message": "cue vet failed"}]


async def test_cue_is_required(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(cue, "command", "cue")
    assert cue.cue_executable() is None
    with pytest.raises(SchemaLanguageUnavailable):
        await cue.vet([cue.CueDocument("a.cue", "a: 1\n")])


@pytest.mark.skipif(cue_for_tests().command is None, reason=cue_for_tests().description)
async def test_cue_vet_with_the_cue_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cue, "command", cue_for_tests().command)
    schema = [cue.CueDocument("limits.cue", "package motion\n\nmax_speed: number & <=5\n")]
    # A schema's fields are open (not concrete): that is consistent, not an error.
    assert await cue.vet(schema) == []
    # (Valid instances and broken schemas: tests/api/test_cue_schemas.py.)
    errors = await cue.vet(schema, instance_json='{"max_speed": 9}')
    assert errors and "limits.cue" in " ".join(e["message"] for e in errors)
