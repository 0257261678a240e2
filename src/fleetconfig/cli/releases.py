"""``fleetconfig releases``: create a release from annotated schemas in git; list and show releases.

``release create`` is what CI runs on every tag. It is safe to run again: the commit, config
types and schemas are looked up before they are created (the server deduplicates schemas by
content), and it says for each whether it was new or already there. Everything that can be
checked before touching the server is (git state, annotations, the version), so a refused run
creates nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from fleetconfig.cli import output
from fleetconfig.cli.client import (
    CliError,
    ExitCode,
    command,
    iterate,
    make_client,
    resolve_release,
)
from fleetconfig.cli.git import Repository, read_repository
from fleetconfig.cli.options import (
    AllOption,
    IdFilter,
    JsonOption,
    LimitOption,
    OffsetOption,
    OrderOption,
    fetch_page,
)
from fleetconfig.cli.schema_files import SchemaFile, collect, read_schema_files

if TYPE_CHECKING:
    from miru_platform_sdk import Miru
    from miru_platform_sdk.types import ConfigType, GitCommit, Release

releases_app = typer.Typer(
    help="Create releases from git; list and show them.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

# Semantic Versioning 2.0.0 with an optional leading "v", as the server accepts it.
SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@dataclass
class Outcome:
    """One object ``release create`` needed, and whether this run created it."""

    kind: str
    created: bool
    item: Any
    label: str
    file: str | None = None


# --- release create ----------------------------------------------------------------------


def ensure_config_types(client: Miru, schemas: list[SchemaFile]) -> dict[str, Outcome]:
    """The config type of each schema by slug, creating the missing ones."""
    import miru_platform_sdk as sdk

    slugs = sorted({schema.config_type_slug for schema in schemas})
    existing = {item.slug: item for item in iterate(client.config_types.list, slug=slugs)}
    outcomes: dict[str, Outcome] = {}
    for slug in slugs:
        if slug in existing:
            outcomes[slug] = Outcome("config type", False, existing[slug], slug)
            continue
        name = next(
            schema.config_type_name for schema in schemas if schema.config_type_slug == slug
        )
        try:
            created: ConfigType = client.config_types.create(name=name, slug=slug)
            outcomes[slug] = Outcome("config type", True, created, slug)
        except sdk.ConflictError:
            # Another run created it since we looked; use that one. A clash on the name
            # (another type already has it) is for the user to resolve.
            again = client.config_types.list(slug=[slug], limit=1).data
            if not again:
                raise
            outcomes[slug] = Outcome("config type", False, again[0], slug)
    return outcomes


def ensure_git_commit(client: Miru, repository: Repository) -> Outcome:
    remote = repository.remote
    label = f"{repository.sha[:10]} {remote.owner}/{remote.repository} ({remote.kind})"
    found = client.git_commits.list(sha=[repository.sha], limit=1).data
    if found:
        return Outcome("git commit", False, found[0], label)
    commit: GitCommit = client.git_commits.create(
        sha=repository.sha, message=repository.message, origin=repository.remote.url
    )
    return Outcome("git commit", True, commit, label)


def existing_schema_ids(client: Miru, config_type_id: str) -> set[str]:
    return {
        item.id for item in iterate(client.config_schemas.list, config_type_id=[config_type_id])
    }


def create_schema(
    client: Miru, schema: SchemaFile, config_type: Outcome, commit: GitCommit
) -> Outcome:
    import miru_platform_sdk as sdk

    # The server answers a create of an existing schema (same content, type and file path)
    # with that schema, so "new or not" is decided by what existed before the call.
    known = set() if config_type.created else existing_schema_ids(client, config_type.item.id)
    try:
        created = client.config_schemas.create(
            config_type_ref={"id": config_type.item.id},
            documents=[{"name": schema.path.name, "data": schema.text}],
            format=schema.format,
            language="jsonschema",
            git_commit={
                "commit_ref": {"id": commit.id},
                "schema_filepaths": [schema.relative_path],
            },
            instance_slots=sdk.omit if schema.instance_slots is None else schema.instance_slots,
        )
    except sdk.UnprocessableEntityError as error:
        from fleetconfig.cli.client import api_error

        refused = api_error(error)
        raise CliError(
            f"{schema.relative_path} was refused by the server: {refused.message}",
            ExitCode.REFUSED,
            refused.details,
            data={**refused.data, "file": schema.relative_path},
        ) from None
    label = f"{schema.relative_path} → {output.slot_files(created)}"
    return Outcome(
        "config schema", created.id not in known, created, label, file=schema.relative_path
    )


def check_version_free(client: Miru, version: str) -> None:
    found = client.releases.list(version=[version], limit=1).data
    if found:
        raise CliError(
            f"Release {version} already exists "
            f"({found[0].id}, created {output.when(found[0].created_at)})",
            ExitCode.REFUSED,
            ["Versions are unique: choose a new one. Nothing was created."],
            data={"code": "conflict", "params": {"reason": "version_taken", "version": version}},
        )


def print_outcomes(outcomes: list[Outcome]) -> None:
    grid = output.table("", "", "", "")
    grid.show_header = False
    for outcome in outcomes:
        state = "[green]new[/green]" if outcome.created else "[dim]existing[/dim]"
        grid.add_row(outcome.kind, state, escape(outcome.label), outcome.item.id)
    output.print_table(grid)


@releases_app.command("create")
@command
def create_release(
    version: Annotated[str, typer.Option(help="The release's semantic version, such as v1.4.0.")],
    schemas: Annotated[
        list[Path] | None,
        typer.Option(
            "--schemas",
            help="A directory of schema files (.json, .yaml, .yml; searched recursively). "
            "Repeatable.",
        ),
    ] = None,
    schema: Annotated[
        list[Path] | None, typer.Option("--schema", help="One schema file. Repeatable.")
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            help="The git remote the commit is published to (default: origin, or the only one)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a release from the annotated JSON Schema files of the current git commit.

    Each schema file names its config type at the top level with x-miru-config-type (a slug),
    and may give x-miru-config-type-name, and x-miru-instance-filepath or (for instances in
    several places) x-miru-instance-slots: a list of {key, name, filepath, required,
    description}. Missing config types
    are created; the commit and schemas are registered (or found, if already there); then the
    release is created. The git tree must be clean and the repository must have a GitHub,
    GitLab or Bitbucket remote.

    The API key needs the read and write scopes of config_types, git_commits, config_schemas
    and releases (or their manage scopes).
    """
    if not SEMVER.match(version):
        raise CliError(
            f"{version!r} is not a semantic version",
            details=["Use a version such as v1.4.0 or 2.0.0-rc.1."],
        )
    directories, files = list(schemas or []), list(schema or [])
    if not directories and not files:
        raise CliError(
            "No schemas given", details=["Use --schemas DIR or --schema FILE (both repeatable)."]
        )
    paths = collect(directories, files)
    start = directories[0] if directories else files[0].parent
    repository = read_repository(start.resolve(), paths, remote)
    schema_files = read_schema_files(paths, repository.root)

    with make_client() as client, output.stderr().status("Creating the release…") as status:
        check_version_free(client, version)
        status.update("Config types…")
        types = ensure_config_types(client, schema_files)
        status.update("Git commit…")
        commit = ensure_git_commit(client, repository)
        outcomes = [commit, *types.values()]
        schema_outcomes: list[Outcome] = []
        for index, schema_file in enumerate(schema_files, start=1):
            status.update(
                f"Schema {index}/{len(schema_files)}: {escape(schema_file.relative_path)}"
            )
            schema_outcomes.append(
                create_schema(client, schema_file, types[schema_file.config_type_slug], commit.item)
            )
        status.update("Release…")
        release: Release = client.releases.create(
            version=version,
            config_schema_ids=[outcome.item.id for outcome in schema_outcomes],
            git_commit_ref={"id": commit.item.id},
            expand=["config_schemas"],
        )
    outcomes.extend(schema_outcomes)
    outcomes.append(Outcome("release", True, release, version))

    if as_json:
        output.print_json(
            {
                "release": release,
                "git_commit": {"created": commit.created, "git_commit": commit.item},
                "config_types": [
                    {"created": item.created, "config_type": item.item} for item in types.values()
                ],
                "config_schemas": [
                    {"file": item.file, "created": item.created, "config_schema": item.item}
                    for item in schema_outcomes
                ],
            }
        )
        return
    print_outcomes(outcomes)
    new_schemas = sum(outcome.created for outcome in schema_outcomes)
    plural = "s" if len(schema_outcomes) != 1 else ""
    output.success(
        f"Release [bold]{escape(version)}[/bold] ({release.id}) created with "
        f"{len(schema_outcomes)} schema{plural} ({new_schemas} new) "
        f"from commit {repository.sha[:10]}."
    )


# --- list / get --------------------------------------------------------------------------


@releases_app.command("list")
@command
def list_releases(
    version: Annotated[
        list[str] | None, typer.Option(help="Only these versions (repeatable).")
    ] = None,
    ids: IdFilter = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    fetch_all: AllOption = False,
    order_by: OrderOption = None,
    as_json: JsonOption = False,
) -> None:
    """List releases, newest first."""
    with make_client() as client:
        page = fetch_page(
            client.releases.list,
            limit=limit,
            offset=offset,
            fetch_all=fetch_all,
            order_by=order_by,
            expand=None if as_json else ["config_schemas"],
            version=version,
            id=ids,
        )
    if as_json:
        output.print_json(page.envelope())
        return
    grid = output.table("version", "id", "config types", "git commit", "created")
    for release in page.data:
        types = output.join(schema.config_type_name for schema in release.config_schemas or [])
        grid.add_row(
            escape(release.version),
            release.id,
            escape(types),
            release.git_commit_id or "",
            output.when(release.created_at),
        )
    output.print_table(grid)
    page.print_footer("releases")


@releases_app.command("get")
@command
def get_release(
    release: Annotated[str, typer.Argument(help="The release's id (rls_...) or version.")],
    as_json: JsonOption = False,
) -> None:
    """Show a release, its schemas and its git commit."""
    with make_client() as client:
        found = resolve_release(client, release, expand_schemas=True)
        commit = (
            client.git_commits.retrieve(found.git_commit_id)
            if found.git_commit_id and not as_json
            else None
        )
    if as_json:
        output.print_json(found)
        return
    fields: list[tuple[str, Any]] = [
        ("Version", found.version),
        ("ID", found.id),
        ("Created", output.when(found.created_at)),
    ]
    if commit is not None:
        fields.append(
            ("Git commit", f"{commit.sha[:10]} {commit.repository_owner}/{commit.repository_name}")
        )
        fields.append(("", commit.commit_url))
        if commit.message:
            fields.append(("", commit.message.splitlines()[0]))
    output.print_fields(fields)
    grid = output.table("config type", "schema", "instance files", "digest", title="\nSchemas")
    for schema in found.config_schemas or []:
        grid.add_row(
            escape(schema.config_type_name),
            schema.id,
            escape(output.slot_files(schema)),
            schema.digest[:19],
        )
    output.print_table(grid)
