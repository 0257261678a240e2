"""Rules of config schemas: immutable, identified by content (get-or-create by digest, config
type, instance slots and format), validated by their language before they are stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fleetconfig.server.config_schemas import cue, rules
from fleetconfig.server.config_schemas.documents import (
    DocumentError,
    off_loop_if_large,
    parse_json,
    parse_yaml,
)
from fleetconfig.server.config_schemas.jsonschema_rules import SchemaProblems, check_schema
from fleetconfig.server.config_schemas.repository import ConfigSchemaRepository
from fleetconfig.server.config_schemas.schemas import (
    ConfigTypeRef,
    CreateConfigSchemaRequest,
)
from fleetconfig.server.config_types.repository import ConfigTypeRepository
from fleetconfig.server.git_commits.service import GitCommitService
from fleetconfig.server.kit import ids
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.errors import NotFound, ValidationFailed, not_found
from fleetconfig.server.models import ConfigSchema, ConfigType, SchemaDocument

MAX_SCHEMA_FILEPATH_LENGTH = 4096


def parse_json_schema_document(format: str, data: str) -> Any:
    """The JSON value of a JSON Schema document (``json`` or ``yaml``), or a 422."""
    try:
        return parse_yaml(data) if format == "yaml" else parse_json(data)
    except DocumentError as error:
        raise rules.fail("/documents/0/data", str(error)) from None


class ConfigSchemaService:
    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.repository = ConfigSchemaRepository(session, workspace_id)

    async def get(self, config_schema_id: str) -> ConfigSchema:
        row = await self.repository.get(config_schema_id)
        if row is None:
            raise not_found("config schema", config_schema_id)
        return row

    async def create(self, request: CreateConfigSchemaRequest) -> ConfigSchema:
        """Return the new schema, or the existing one with the same content, type and path."""
        rules.check_language_format(request.language, request.format)
        rules.check_document_count(request.language, len(request.documents))
        for index, document in enumerate(request.documents):
            rules.check_document_name(f"/documents/{index}/name", document.name)
            rules.check_text(f"/documents/{index}/data", document.data)
        if request.git_commit is not None:
            self._check_schema_filepaths(request.language, request.git_commit.schema_filepaths)
        if request.language == rules.CUE:
            # Refuse before anything else: without cue we can neither check nor accept it.
            cue.require_cue()
            # Checked before the first statement, which on SQLite takes the database's one
            # write lock: the external cue runs for up to a second.
            await self._check_cue(request)

        config_type = await self._config_type(request.config_type_ref)
        slots, instance_format = self._slots(request, config_type)
        instance_filepath = rules.single_filepath(slots)
        slots_key = rules.slots_key(instance_format, slots)
        git_commit_id = None
        if request.git_commit is not None:
            reference = request.git_commit.commit_ref
            commit = await GitCommitService(self.session, self.workspace_id).resolve_ref(
                reference.id, reference.sha
            )
            git_commit_id = commit.id

        if request.language == rules.CUE:
            digest = rules.cue_digest([document.data for document in request.documents])
        else:  # JSON Schema, or an opaque document (JSON or YAML, never checked further)
            data = request.documents[0].data
            parsed = await off_loop_if_large(
                len(data), parse_json_schema_document, request.format, data
            )
            digest = rules.json_schema_digest(parsed)

        existing = await self.repository.find_same(config_type.id, digest, slots_key)
        if existing is not None:
            return existing

        if request.language == rules.JSONSCHEMA:
            size = len(request.documents[0].data)
            await off_loop_if_large(
                size, self._check_json_schema, parsed, request.documents[0].name
            )

        now = utcnow()
        row = ConfigSchema(
            id=ids.new_id(ids.CONFIG_SCHEMA),
            workspace_id=self.workspace_id,
            config_type_id=config_type.id,
            digest=digest,
            instance_filepath=instance_filepath,
            instance_slots=slots,
            instance_format=instance_format,
            slots_key=slots_key,
            language=request.language,
            format=request.format,
            git_commit_id=git_commit_id,
            schema_filepaths=request.git_commit.schema_filepaths if request.git_commit else None,
            created_at=now,
            updated_at=now,
        )
        documents = [
            SchemaDocument(
                id=ids.new_id(ids.SCHEMA_DOCUMENT),
                config_schema_id=row.id,
                position=position,
                name=document.name,
                data=document.data,
            )
            for position, document in enumerate(request.documents)
        ]
        try:
            # A savepoint, so that losing a race to create the same schema (the unique
            # constraint) leaves the transaction usable for reading the winner's row.
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
                self.session.add_all(documents)
                await self.session.flush()
        except IntegrityError:
            existing = await self.repository.find_same(config_type.id, digest, slots_key)
            if existing is None:
                raise
            return existing
        return row

    @staticmethod
    def _slots(
        request: CreateConfigSchemaRequest, config_type: ConfigType
    ) -> tuple[list[dict[str, object]], str]:
        """The schema's slots and instance format. Without slots: one required ``default``
        slot at ``instance_filepath`` or the default path; without a format: the one the
        (first) path's extension says, as before slots existed."""
        if request.instance_slots is not None:
            slots = rules.check_slots([slot.model_dump() for slot in request.instance_slots])
        elif request.instance_filepath is not None:
            slots = [
                rules.default_slot(rules.normalize_instance_filepath(request.instance_filepath))
            ]
        else:
            default = rules.default_instance_filepath(
                config_type.slug, request.instance_format or "json"
            )
            slots = [rules.default_slot(default)]
        instance_format = request.instance_format or rules.format_of_filepath(
            str(slots[0]["filepath"])
        )
        if request.language != rules.OPAQUE and instance_format not in (
            rules.VALIDATED_INSTANCE_FORMATS
        ):
            raise rules.fail(
                "/instance_format",
                f"a {request.language} schema's instances are "
                f"{', '.join(rules.VALIDATED_INSTANCE_FORMATS)}; {instance_format} needs an "
                "opaque schema",
            )
        return slots, instance_format

    async def _config_type(self, reference: ConfigTypeRef) -> ConfigType:
        repository = ConfigTypeRepository(self.session, self.workspace_id)
        if reference.id is not None:
            found = await repository.get(reference.id)
            if found is None:
                raise not_found("config type", reference.id)
            return found
        assert reference.slug is not None
        found = await repository.get_by_slug(reference.slug)
        if found is None:
            raise NotFound(f"No config type with slug {reference.slug}", slug=reference.slug)
        return found

    @staticmethod
    def _check_schema_filepaths(language: str, filepaths: list[str]) -> None:
        if not filepaths:
            raise rules.fail("/git_commit/schema_filepaths", "at least one file path is required")
        if language == rules.JSONSCHEMA and len(filepaths) != 1:
            raise rules.fail(
                "/git_commit/schema_filepaths", "a jsonschema schema comes from exactly one file"
            )
        for index, filepath in enumerate(filepaths):
            path = f"/git_commit/schema_filepaths/{index}"
            if not filepath.strip():
                raise rules.fail(path, "must not be empty")
            if len(filepath) > MAX_SCHEMA_FILEPATH_LENGTH:
                raise rules.fail(
                    path, f"must be at most {MAX_SCHEMA_FILEPATH_LENGTH} characters long"
                )
            rules.check_text(path, filepath)

    @staticmethod
    def _check_json_schema(schema: Any, document_name: str) -> None:
        try:
            check_schema(schema)
        except SchemaProblems as problems:
            raise ValidationFailed(
                f"{document_name} is not a valid JSON Schema: {problems.errors[0]['message']}",
                errors=problems.errors,
                document=document_name,
            ) from None

    @staticmethod
    async def _check_cue(request: CreateConfigSchemaRequest) -> None:
        documents = [cue.CueDocument(name=d.name, data=d.data) for d in request.documents]
        errors = await cue.vet(documents)
        if errors:
            raise ValidationFailed(
                f"The CUE schema is not valid: {errors[0]['message']}", errors=errors
            )
