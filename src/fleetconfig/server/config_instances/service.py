"""Rules of config instances: immutable; the content (JSON, YAML or JSONC; XML and text for
opaque schemas) must be valid against the schema (every violation is reported); the text is
stored exactly as sent; the slot (hence the file path) and config type come from the schema."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.config_instances.repository import ConfigInstanceRepository
from fleetconfig.server.config_schemas import cue, rules
from fleetconfig.server.config_schemas.documents import (
    DocumentError,
    off_loop_if_large,
    parse_json,
    parse_jsonc,
    parse_yaml,
)
from fleetconfig.server.config_schemas.jsonschema_rules import (
    ValidatorCache,
    compile_validator,
    instance_errors,
)
from fleetconfig.server.config_schemas.repository import ConfigSchemaRepository, documents_by_schema
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.db import Database
from fleetconfig.server.kit.errors import ValidationFailed, not_found
from fleetconfig.server.models import ConfigInstance, ConfigSchema

# Shared by every request of the process: schemas never change, so neither do validators.
VALIDATORS = ValidatorCache(max_size=256)


class ConfigInstanceService:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.repository = ConfigInstanceRepository(session, workspace_id)

    async def get(self, config_instance_id: str) -> ConfigInstance:
        row = await self.repository.get(config_instance_id)
        if row is None:
            raise not_found("config instance", config_instance_id)
        return row

    async def content(self, config_instance_id: str) -> tuple[str, str]:
        """``(filepath, data)`` for the download."""
        found = await self.repository.content(config_instance_id)
        if found is None:
            raise not_found("config instance", config_instance_id)
        return found

    async def prepare(
        self, config_schema_id: str, format: str, data: str, slot_key: str | None = None
    ) -> ConfigInstance:
        """The new instance, checked against its schema and slot, not yet added."""
        schema = await ConfigSchemaRepository(self.session, self.workspace_id).get(config_schema_id)
        if schema is None:
            raise not_found("config schema", config_schema_id)
        slot = self._slot(schema, slot_key)
        await self.check_content(schema, data, format)
        return ConfigInstance(
            id=ids.new_id(ids.CONFIG_INSTANCE),
            workspace_id=self.workspace_id,
            config_schema_id=schema.id,
            config_type_id=schema.config_type_id,
            slot_key=str(slot["key"]),
            # The agent writes each instance where its slot says.
            filepath=str(slot["filepath"]),
            format=format,
            data=data,
        )

    async def add(self, row: ConfigInstance) -> ConfigInstance:
        self.session.add(row)
        await self.session.flush()
        return row

    @staticmethod
    def _slot(schema: ConfigSchema, slot_key: str | None) -> dict[str, object]:
        """The slot the instance fills: the one named, or the schema's only one."""
        keys = [str(slot["key"]) for slot in schema.instance_slots]
        if slot_key is None:
            if len(schema.instance_slots) == 1:
                return schema.instance_slots[0]
            # Versions before everglades cannot name a slot (decision 5).
            raise ValidationFailed(
                f"Config schema {schema.id} has several slots ({', '.join(keys)}): give "
                "slot_key (API version 2026-08-17.everglades) to say which one this fills",
                errors=[{"path": "/slot_key", "message": f"one of {', '.join(keys)}"}],
                slots=keys,
                available_from="2026-08-17.everglades",
            )
        for slot in schema.instance_slots:
            if slot["key"] == slot_key:
                return slot
        raise ValidationFailed(
            f"Config schema {schema.id} has no slot {slot_key!r} (its slots: {', '.join(keys)})",
            errors=[{"path": "/slot_key", "message": f"one of {', '.join(keys)}"}],
            slots=keys,
        )

    async def check_content(self, schema: ConfigSchema, data: str, format: str = "json") -> None:
        """Raise ``ValidationFailed`` listing every problem ``data`` has as content of ``schema``.

        Also used by the dashboard's editor to validate as the user types.
        """
        rules.check_text("/content/data", data)
        if schema.language == rules.OPAQUE:
            return  # an opaque schema regards every instance as valid
        if format not in rules.VALIDATED_INSTANCE_FORMATS:
            raise ValidationFailed(
                f"A {schema.language} schema validates "
                f"{', '.join(rules.VALIDATED_INSTANCE_FORMATS)} content, not {format}; "
                f"{format} content needs an opaque schema",
                errors=[{"path": "/content/format", "message": f"{format} is not validated"}],
            )
        parse = {"json": parse_json, "yaml": parse_yaml, "jsonc": parse_jsonc}[format]
        label = {"json": "JSON", "yaml": "YAML", "jsonc": "JSONC"}[format]
        try:
            instance = await off_loop_if_large(len(data), parse, data)
        except DocumentError as error:
            raise ValidationFailed(
                f"content.data is not valid {label}: {error}",
                errors=[{"path": "", "message": f"not valid {label}: {error}"}],
            ) from None
        # CUE reads JSON; YAML and JSONC are handed over as the JSON value they hold (the
        # stored bytes stay exactly as sent).
        as_json = data if format == "json" else json.dumps(instance)
        await self._validate(schema, as_json, instance)

    async def _validate(self, schema: ConfigSchema, data: str, instance: object) -> None:
        if schema.language == rules.CUE:
            documents = (await documents_by_schema(self.session, [schema.id]))[schema.id]
            errors = await cue.vet(
                [cue.CueDocument(name=document.name, data=document.data) for document in documents],
                instance_json=data,
            )
            count = len(errors)
        else:
            validator = VALIDATORS.get(schema.id)
            if validator is None:
                (document,) = (await documents_by_schema(self.session, [schema.id]))[schema.id]
                try:
                    parsed = (
                        parse_yaml(document.data)
                        if schema.format == "yaml"
                        else parse_json(document.data)
                    )
                except DocumentError as error:  # stored schemas parsed when created
                    raise ValidationFailed(
                        f"The config schema can no longer be read: {error}",
                        errors=[{"path": "", "message": str(error)}],
                    ) from None
                validator = compile_validator(parsed)
                VALIDATORS.put(schema.id, validator)
            errors, count = await off_loop_if_large(len(data), instance_errors, validator, instance)
        if errors:
            raise ValidationFailed(
                f"content.data does not match the config schema: {count} error(s), "
                f"first at {errors[0]['path'] or '/'}: {errors[0]['message']}",
                errors=errors,
                error_count=count,
            )


async def checked_config_instance(
    database: Database,
    workspace_id: str,
    config_schema_id: str,
    format: str,
    data: str,
    slot_key: str | None = None,
) -> ConfigInstance:
    """A new config instance, checked in a read session of its own before the writing one
    adds it: a CUE check runs an external program for up to a second, and on SQLite a
    writing session holds the database's one write lock from its first statement. Schemas
    never change, so what was checked still holds when the instance is added."""
    async with database.session() as session:
        return await ConfigInstanceService(session, workspace_id).prepare(
            config_schema_id, format, data, slot_key
        )
