"""``fleetconfig deployments`` and ``fleetconfig deploy``: stage, review, deploy and watch rollouts.

- ``deploy --device D --release R --instance I...`` deploys at once (one device or many).
- ``deployments stage`` creates staged deployments for review, on one device or many.
- ``deployments deploy`` deploys staged deployments: given ids, or every staged one of a release.
- ``deployments watch`` shows live counts by status until every deployment reaches its target.

Devices may be given by id or name, releases by id or version.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fleetconfig.cli import deployment_details as details
from fleetconfig.cli import output
from fleetconfig.cli.bulk import (
    BulkResult,
    Outcome,
    print_summary,
    run_batches,
    run_bulk,
    summary_data,
)
from fleetconfig.cli.client import (
    CliError,
    ExitCode,
    api_error,
    chunks,
    command,
    is_api_error,
    iterate,
    make_client,
    resolve_release,
)
from fleetconfig.cli.options import (
    AllOption,
    IdFilter,
    JsonOption,
    LimitOption,
    OffsetOption,
    OrderOption,
    check_choices,
    fetch_page,
)

if TYPE_CHECKING:
    from miru_platform_sdk import Miru
    from miru_platform_sdk.types import Deployment, Device, Release

deployments_app = typer.Typer(
    help="Deployments: stage, deploy, archive, review drifts, watch rollouts.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TARGET_STATUSES = ("staged", "deployed", "archived")
ACTIVITY_STATUSES = ("drifted", "staged", "queued", "deployed", "archived")
ERROR_STATUSES = ("none", "retrying", "failed")
DeploymentArgument = Annotated[str, typer.Argument(help="The deployment's id (dpl_...).")]
ConcurrencyOption = Annotated[int, typer.Option(help="Requests in flight at once.", min=1, max=32)]
BatchSizeOption = Annotated[
    int,
    typer.Option(
        help="Deployments per request: the server stages, deploys or archives each batch in "
        "one transaction.",
        min=1,
        max=10_000,
    ),
]
DescriptionOption = Annotated[
    str, typer.Option(help="What this deployment is for (shown in history).")
]


# --- looking things up -------------------------------------------------------------------


def resolve_devices(client: Miru, references: list[str]) -> list[Device]:
    """Devices by id or name, in the order given; refuse (naming them all) if any is unknown."""
    ids = [reference for reference in references if reference.startswith("dvc_")]
    names = [reference for reference in references if not reference.startswith("dvc_")]
    by_id: dict[str, Device] = {}
    by_name: dict[str, Device] = {}
    for chunk in chunks(list(dict.fromkeys(ids))):
        by_id.update(
            (device.id, device) for device in client.devices.list(id=chunk, limit=100).data
        )
    for chunk in chunks(list(dict.fromkeys(names))):
        by_name.update(
            (device.name, device) for device in client.devices.list(name=chunk, limit=100).data
        )
    missing = [
        reference for reference in references if reference not in by_id and reference not in by_name
    ]
    if missing:
        raise CliError(
            f"Unknown device{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            ExitCode.REFUSED,
            ["Nothing was changed."],
            data={"code": "not_found", "params": {"devices": missing}},
        )
    found = [by_id.get(reference) or by_name[reference] for reference in references]
    return list({device.id: device for device in found}.values())


def device_ids(client: Miru, references: list[str] | None) -> list[str] | None:
    if not references:
        return None
    return [device.id for device in resolve_devices(client, references)]


def check_instances(client: Miru, release: Release, instance_ids: list[str]) -> None:
    """Refuse early, with every problem listed, a set of instances that doesn't fit the release.

    The server refuses it too, but once per device: checking here saves a bulk run of a
    hundred identical failures.
    """
    schemas = {schema.id: schema for schema in release.config_schemas or []}
    instances: dict[str, Any] = {}
    for chunk in chunks(list(dict.fromkeys(instance_ids))):
        instances.update(
            (item.id, item) for item in client.config_instances.list(id=chunk, limit=100).data
        )
    problems = [
        f"{item}: no such config instance" for item in instance_ids if item not in instances
    ]
    # Everglades' slot rules: at most one instance per slot of each schema, one for every
    # required slot (a schema without slot annotations has one required slot, "default").
    covered: dict[tuple[str, str], list[str]] = {}
    for item in instances.values():
        if item.config_schema_id not in schemas:
            problems.append(
                f"{item.id} ({item.config_type_name}) is for schema {item.config_schema_id}, "
                f"which release {release.version} does not include"
            )
        slot_key = str(getattr(item, "slot_key", None) or "default")
        covered.setdefault((item.config_schema_id, slot_key), []).append(item.id)
    for schema_id, schema in schemas.items():
        for slot in output.slots(schema) or [{"key": "default", "required": True}]:
            key = str(slot.get("key"))
            owners = covered.get((schema_id, key), [])
            where = schema.config_type_name if key == "default" else f"slot {key} of "
            where = where if key == "default" else where + schema.config_type_name
            if not owners and slot.get("required", True):
                problems.append(f"no instance given for {where} (schema {schema_id})")
            elif len(owners) > 1:
                problems.append(f"{len(owners)} instances given for {where}: {', '.join(owners)}")
    if problems:
        raise CliError(
            f"The config instances don't match release {release.version}",
            ExitCode.USAGE,
            [
                *problems,
                "Give one --instance per schema of the release (per required slot, for a "
                "schema with several slots).",
            ],
        )


# --- printing ----------------------------------------------------------------------------


def deployments_table(deployments: list[Deployment]) -> Table:
    grid = output.table(
        "id", "device", "release", "status", "target", "health", "created", "reason"
    )
    for deployment in deployments:
        grid.add_row(
            deployment.id,
            escape(deployment.device.name if deployment.device else deployment.device_id),
            escape(deployment.release.version if deployment.release else deployment.release_id),
            output.status_text(deployment.status),
            deployment.target_status,
            output.status_text(details.health_text(deployment)),
            output.when(deployment.created_at),
            escape(details.reason(deployment)),
        )
    return grid


def print_deployment(deployment: Deployment) -> None:
    device = deployment.device
    release = deployment.release
    output.print_fields(
        [
            ("ID", deployment.id),
            ("Device", f"{device.name} ({device.id})" if device else deployment.device_id),
            ("Release", f"{release.version} ({release.id})" if release else deployment.release_id),
            ("Status", output.status_text(deployment.status)),
            ("Target", deployment.target_status),
            ("Activity", deployment.activity_status),
            ("Error", deployment.error_status),
            *details.detail_fields(deployment),
            ("Description", deployment.description),
            ("Created", output.when(deployment.created_at)),
            ("Updated", output.when(deployment.updated_at)),
        ]
    )
    if deployment.config_instances is not None:
        grid = output.table("config type", "instance", "file", title="\nConfig instances")
        for instance in deployment.config_instances:
            grid.add_row(escape(instance.config_type_name), instance.id, escape(instance.filepath))
        output.print_table(grid)


# --- list / get / drifts -----------------------------------------------------------------


@deployments_app.command("list")
@command
def list_deployments(
    device: Annotated[
        list[str] | None, typer.Option(help="Only on these devices (id or name; repeatable).")
    ] = None,
    release: Annotated[
        list[str] | None, typer.Option(help="Only of these releases (id or version; repeatable).")
    ] = None,
    target_status: Annotated[
        list[str] | None,
        typer.Option(help=f"Only these target statuses: {', '.join(TARGET_STATUSES)}."),
    ] = None,
    activity_status: Annotated[
        list[str] | None,
        typer.Option(help=f"Only these activity statuses: {', '.join(ACTIVITY_STATUSES)}."),
    ] = None,
    error_status: Annotated[
        list[str] | None,
        typer.Option(help=f"Only these error statuses: {', '.join(ERROR_STATUSES)}."),
    ] = None,
    ids: IdFilter = None,
    limit: LimitOption = 20,
    offset: OffsetOption = 0,
    fetch_all: AllOption = False,
    order_by: OrderOption = None,
    as_json: JsonOption = False,
) -> None:
    """List deployments, newest first; filters of different kinds combine (AND)."""
    filters = {
        "target_status": check_choices("--target-status", target_status, TARGET_STATUSES),
        "activity_status": check_choices("--activity-status", activity_status, ACTIVITY_STATUSES),
        "error_status": check_choices("--error-status", error_status, ERROR_STATUSES),
    }
    with make_client() as client:
        release_ids = [resolve_release(client, item).id for item in release] if release else None
        page = fetch_page(
            client.deployments.list,
            limit=limit,
            offset=offset,
            fetch_all=fetch_all,
            order_by=order_by,
            expand=None if as_json else ["device", "release"],
            id=ids,
            device_id=device_ids(client, device),
            release_id=release_ids,
            **filters,
        )
    if as_json:
        output.print_json(page.envelope())
        return
    output.print_table(deployments_table(page.data))
    page.print_footer("deployments")


@deployments_app.command("get")
@command
def get_deployment(deployment: DeploymentArgument, as_json: JsonOption = False) -> None:
    """Show a deployment with its device, release and config instances."""
    with make_client() as client:
        found = client.deployments.retrieve(
            deployment, expand=["device", "release", "config_instances"]
        )
    if as_json:
        output.print_json(found)
        return
    print_deployment(found)


@deployments_app.command("drifts")
@command
def list_drifts(deployment: DeploymentArgument, as_json: JsonOption = False) -> None:
    """The deployments that became the device's target since this one was staged (newest first)."""
    with make_client() as client:
        drifts = client.deployments.list_drifts(deployment, expand=["device", "release"])
    if as_json:
        output.print_json(drifts)
        return
    if not drifts.data:
        output.note(
            f"{deployment} has not drifted: nothing was deployed to its device since it was staged."
        )
        return
    output.print_table(deployments_table(list(drifts.data)))
    output.note(f"[dim]{len(drifts.data)} deployment(s) since {deployment} was staged.[/dim]")


# --- creating: stage, and deploy at once -------------------------------------------------


def create_deployments(
    target_status: str,
    devices: list[str] | None,
    all_devices: bool,
    release_reference: str,
    instance_ids: list[str],
    description: str,
    parent: str | None,
    as_json: bool,
    *,
    concurrency: int = 4,
    batch_size: int = 200,
) -> None:
    if not devices and not all_devices:
        raise CliError("No devices given", details=["Use --device (repeatable) or --all-devices."])
    if devices and all_devices:
        raise CliError("Give --device or --all-devices, not both")
    if not instance_ids:
        raise CliError(
            "No config instances given", details=["Give one --instance per schema of the release."]
        )
    verb = "Staged" if target_status == "staged" else "Deployed"
    with make_client() as client:
        release = resolve_release(client, release_reference, expand_schemas=True)
        check_instances(client, release, instance_ids)
        targets = (
            list(iterate(client.devices.list))
            if all_devices
            else resolve_devices(client, devices or [])
        )
        if parent is not None and len(targets) != 1:
            raise CliError("--parent applies to a single device")
        # Everglades' concurrency token (API_VERSIONS.md decision 6): the server refuses with
        # 409 when the device's current target is not this one; "none" says it has none.
        options: dict[str, Any] = {}
        if parent is not None:
            options["parent_id"] = None if parent.lower() == "none" else parent

        def create(device: Device) -> Deployment:
            return client.deployments.create(
                device_id=device.id,
                release_id=release.id,
                config_instance_ids=instance_ids,
                target_status=target_status,  # type: ignore[arg-type]
                description=description,
                **options,
            )

        if len(targets) == 1:
            # One device: no progress bar, and a failure is the command's failure.
            created = create(targets[0])
            if as_json:
                output.print_json(created)
            else:
                device_name = escape(targets[0].name)
                output.success(
                    f"{verb} release {escape(release.version)} on [bold]{device_name}[/bold]: "
                    f"{created.id} ({created.status})."
                )
            return
        if target_status == "staged":
            # Many devices: the server's bulk operation, a batch of devices per request.
            def stage_batch(batch: list[Device]) -> list[Outcome]:
                answer = bulk_call(
                    client,
                    "bulk_stage",
                    release_id=release.id,
                    device_ids=[device.id for device in batch],
                    config_instance_ids=instance_ids,
                    description=description,
                )
                names = {device.id: device.name for device in batch}
                return bulk_outcomes(answer, lambda item: names[item["device_id"]])

            result = run_batches(
                targets,
                stage_batch,
                label=lambda device: device.name,
                description=f"Staging {release.version}",
                batch_size=batch_size,
                quiet=as_json,
            )
        else:
            result = run_bulk(
                targets,
                create,
                label=lambda device: device.name,
                description=f"Deploying {release.version}",
                concurrency=concurrency,
                quiet=as_json,
            )
    finish_bulk(result, verb, "deployments", as_json)


def finish_bulk(result: BulkResult[Any], verb: str, noun: str, as_json: bool) -> None:
    if as_json:
        output.print_json(summary_data(result, "deployments"))
    else:
        print_summary(result, verb, noun)
    if result.interrupted:
        raise typer.Exit(130)  # the shell's convention for Ctrl-C
    if result.failed:
        raise typer.Exit(int(ExitCode.REFUSED))


DevicesOption = Annotated[
    list[str] | None,
    typer.Option("--device", help="A device (id or name). Repeatable for many devices."),
]
AllDevicesOption = Annotated[
    bool, typer.Option("--all-devices", help="Every device of the workspace.")
]
ReleaseOption = Annotated[str, typer.Option("--release", help="The release (id or version).")]
InstancesOption = Annotated[
    list[str],
    typer.Option(
        "--instance", help="A config instance id; one per schema of the release. Repeatable."
    ),
]
ParentOption = Annotated[
    str | None,
    typer.Option(
        "--parent",
        help="The device's current target as you know it (a deployment id, or `none`): "
        "refused if another deployment became its target meanwhile (single device only).",
    ),
]


@deployments_app.command("stage")
@command
def stage(
    release: ReleaseOption,
    instance: InstancesOption,
    device: DevicesOption = None,
    all_devices: AllDevicesOption = False,
    description: DescriptionOption = "Staged with the fleetconfig CLI",
    parent: ParentOption = None,
    batch_size: BatchSizeOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Stage deployments of a release for review, on one device or many (with progress).

    A device's earlier staged deployment of the same release is replaced. Staging the
    release a device already runs is refused (deploy it instead).

    With --json: the deployment when there is one; {summary, deployments, failed} for several.
    """
    create_deployments(
        "staged",
        device,
        all_devices,
        release,
        instance,
        description,
        parent,
        as_json,
        batch_size=batch_size,
    )


@command
def deploy_now(
    release: ReleaseOption,
    instance: InstancesOption,
    device: DevicesOption = None,
    all_devices: AllDevicesOption = False,
    description: DescriptionOption = "Deployed with the fleetconfig CLI",
    parent: ParentOption = None,
    concurrency: ConcurrencyOption = 4,
    as_json: JsonOption = False,
) -> None:
    """Deploy config instances of a release to devices now (no staging), with progress for many.

    Allowed when the release is the device's current release, or it has none yet; to move a
    device to another release, stage and then deploy (fleetconfig deployments stage/deploy).

    With --json: the deployment when there is one; {summary, deployments, failed} for several.
    """
    create_deployments(
        "deployed",
        device,
        all_devices,
        release,
        instance,
        description,
        parent,
        as_json,
        concurrency=concurrency,
    )


# --- acting on existing deployments: deploy, archive --------------------------------------


def select_staged(client: Miru, release_reference: str, as_json: bool) -> list[str]:
    release = resolve_release(client, release_reference)
    staged = [
        item.id
        for item in iterate(
            client.deployments.list, release_id=[release.id], activity_status=["staged"]
        )
        if item.target_status == "staged"
    ]
    drifted = client.deployments.list(
        release_id=[release.id], activity_status=["drifted"], limit=1, expand=["total_count"]
    ).total_count
    if drifted and not as_json:
        output.note(
            f"[yellow]{drifted} drifted deployment(s) of {escape(release.version)} "
            "left out:[/yellow] "
            "their devices changed since staging; review them (deployments drifts ID)."
        )
    return staged


def act_on_deployments(
    action_name: str,
    ids: list[str] | None,
    all_staged: bool,
    release: str | None,
    batch_size: int,
    as_json: bool,
) -> None:
    if all_staged and release is None:
        raise CliError("--all-staged needs --release R")
    if ids and all_staged:
        raise CliError("Give deployment ids or --all-staged --release R, not both")
    if not ids and not all_staged:
        raise CliError(
            "No deployments given", details=["Give deployment ids, or --all-staged --release R."]
        )
    verb = {"deploy": "Deployed", "archive": "Archived", "restage": "Restaged"}[action_name]
    with make_client() as client:
        if not all_staged:
            selected = list(dict.fromkeys(ids or []))
        elif action_name == "restage":
            selected = select_drifted(client, release or "")
        else:
            selected = select_staged(client, release or "", as_json)
        if not selected:
            if as_json:
                output.print_json(summary_data(BulkResult(), "deployments"))
            else:
                kind = "drifted" if action_name == "restage" else "staged"
                output.note(f"No {kind} deployments to act on.")
            return
        if len(selected) == 1 and not all_staged:
            done = act_on_one(client, action_name, selected[0])
            if as_json:
                output.print_json(done)
            else:
                output.success(f"{verb} {done.id} ({done.status}).")
            return
        description = {"deploy": "Deploying", "archive": "Archiving", "restage": "Restaging"}
        result = run_batches(
            selected,
            lambda batch: act_on_batch(client, action_name, batch),
            label=lambda item: item,
            description=description[action_name],
            batch_size=batch_size,
            quiet=as_json,
        )
    finish_bulk(result, verb, "deployments", as_json)


def act_on_one(client: Miru, action_name: str, deployment_id: str) -> Deployment:
    if action_name == "deploy":
        return client.deployments.deploy(deployment_id)
    if action_name == "archive":
        return client.deployments.archive(deployment_id)
    # Restage is a fleetconfig extension the official client does not know; its answer is a
    # deployment of the official shape. (Imported here: the SDK loads slowly, see options.)
    from miru_platform_sdk.types import Deployment

    return client.post(f"/deployments/{deployment_id}/restage", body={}, cast_to=Deployment)


def select_drifted(client: Miru, release_reference: str) -> list[str]:
    """The release's drifted deployments that were staged (restage stages them again)."""
    release = resolve_release(client, release_reference)
    return [
        item.id
        for item in iterate(
            client.deployments.list, release_id=[release.id], activity_status=["drifted"]
        )
        if item.target_status == "staged"
    ]


def bulk_call(client: Miru, operation: str, **body: Any) -> dict[str, Any]:
    """One of fleetconfig's bulk deployment operations (extensions the official client does
    not know: sent through its raw request method, with its key, retries and errors)."""
    answer = client.post(f"/deployments/{operation}", body=body, cast_to=object)
    assert isinstance(answer, dict)
    return answer


def bulk_outcomes(answer: dict[str, Any], label: Callable[[dict[str, Any]], str]) -> list[Outcome]:
    """A bulk answer's items as outcomes: the deployment (id, device, status), or why it
    could not move."""
    outcomes: list[Outcome] = []
    for item in answer["data"]:
        error = item.get("error")
        if error is None:
            done = {"id": item["deployment_id"], "device_id": item["device_id"]}
            outcomes.append((label(item), {**done, "status": item["status"]}, None))
            continue
        reason = error["params"].get("reason")
        code = f"{error['code']}: {reason}" if reason else error["code"]
        failure = CliError(f"{error['message']} ({code})", ExitCode.REFUSED, data=error)
        outcomes.append((label(item), None, failure))
    return outcomes


def act_on_batch(client: Miru, action_name: str, batch: list[str]) -> list[Outcome]:
    """Deploy or archive a batch of ids; ids the server does not know (it refuses the whole
    request, naming them) fail on their own and the rest are sent again."""
    try:
        answer = bulk_call(client, f"bulk_{action_name}", deployment_ids=batch)
    except Exception as error:
        if not is_api_error(error):
            raise
        refused = api_error(error)
        unknown = set(refused.data.get("params", {}).get("ids") or [])
        if refused.data.get("code") != "not_found" or not unknown:
            raise refused from None
        known = [item for item in batch if item not in unknown]
        gone = [(item, None, refused) for item in batch if item in unknown]
        return gone + (act_on_batch(client, action_name, known) if known else [])
    return bulk_outcomes(answer, lambda item: item["deployment_id"])


DeploymentIds = Annotated[
    list[str] | None,
    typer.Argument(
        help="Deployment ids (dpl_...).", metavar="DEPLOYMENT_ID...", show_default=False
    ),
]
AllStagedOption = Annotated[
    bool,
    typer.Option(
        "--all-staged", help="Every staged deployment of --release (drifted ones are left out)."
    ),
]
OptionalRelease = Annotated[
    str | None, typer.Option("--release", help="With --all-staged: the release (id or version).")
]


@deployments_app.command("deploy")
@command
def deploy_staged(
    ids: DeploymentIds = None,
    all_staged: AllStagedOption = False,
    release: OptionalRelease = None,
    batch_size: BatchSizeOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Deploy staged deployments: the ids given, or all staged ones of a release (with progress).

    Exit status 1 if any could not be deployed; the summary says why for each.

    With --json: the deployment when there is one; {summary, deployments, failed} for several.
    """
    act_on_deployments("deploy", ids, all_staged, release, batch_size, as_json)


@deployments_app.command("archive")
@command
def archive(
    ids: DeploymentIds = None,
    all_staged: AllStagedOption = False,
    release: OptionalRelease = None,
    batch_size: BatchSizeOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Archive staged or drifted deployments: the ids given, or all staged ones of a release.

    With --json: the deployment when there is one; {summary, deployments, failed} for several.
    """
    act_on_deployments("archive", ids, all_staged, release, batch_size, as_json)


@deployments_app.command("restage")
@command
def restage(
    ids: DeploymentIds = None,
    all_drifted: Annotated[
        bool,
        typer.Option("--all-drifted", help="Every drifted (staged) deployment of --release."),
    ] = False,
    release: Annotated[
        str | None,
        typer.Option("--release", help="With --all-drifted: the release (id or version)."),
    ] = None,
    batch_size: BatchSizeOption = 200,
    as_json: JsonOption = False,
) -> None:
    """Stage drifted deployments again, once reviewed (deployments drifts ID shows what changed).

    A staged deployment drifts when its device changes after it was planned; it cannot be
    deployed until it is restaged. Exit status 1 if any could not be restaged.

    With --json: the deployment when there is one; {summary, deployments, failed} for several.
    """
    if all_drifted and release is None:
        raise CliError("--all-drifted needs --release R")
    if ids and all_drifted:
        raise CliError("Give deployment ids or --all-drifted --release R, not both")
    if not ids and not all_drifted:
        raise CliError(
            "No deployments given", details=["Give deployment ids, or --all-drifted --release R."]
        )
    act_on_deployments("restage", ids, all_drifted, release, batch_size, as_json)


# --- watch -------------------------------------------------------------------------------


def device_names(client: Miru, device_ids: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for chunk in chunks(list(dict.fromkeys(device_ids))):
        names.update((item.id, item.name) for item in client.devices.list(id=chunk, limit=100).data)
    return names


def reached(deployment: Deployment) -> bool:
    return (
        deployment.error_status == "none" and deployment.activity_status == deployment.target_status
    )


def settled(deployment: Deployment) -> bool:
    """Nothing more will happen to it without someone acting: reached, failed, or drifted."""
    return (
        reached(deployment)
        or deployment.error_status == "failed"
        or (deployment.target_status == "staged" and deployment.activity_status == "drifted")
    )


def counts_table(
    counts: Mapping[str, int], total: int, done: int, elapsed: float, timeout: float
) -> Table:
    grid = output.table(
        "status",
        "count",
        title=f"{done}/{total} reached their target · {elapsed:.0f}s of {timeout:g}s",
    )
    for status in ("queued", "retrying", "staged", "drifted", "deployed", "archived", "failed"):
        if counts.get(status):
            grid.add_row(output.status_text(status), str(counts[status]))
    return grid


@deployments_app.command("watch")
@command
def watch(
    ids: DeploymentIds = None,
    release: Annotated[
        str | None, typer.Option(help="Deployments of this release (id or version).")
    ] = None,
    device: Annotated[
        list[str] | None, typer.Option(help="Deployments on these devices (id or name).")
    ] = None,
    target_status: Annotated[
        str, typer.Option(help="With --release/--device: the target status to watch.")
    ] = "deployed",
    timeout: Annotated[
        float, typer.Option(help="Give up after this many seconds (exit 4).", min=0)
    ] = 300,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Live counts by status until every deployment reaches its target, or the timeout.

    Exit 0 when all reached their target, 1 if any failed, 4 on timeout.
    """
    if not ids and release is None and not device:
        raise CliError(
            "Nothing to watch", details=["Give deployment ids, --release R or --device D."]
        )
    check_choices("--target-status", [target_status], TARGET_STATUSES)
    started = time.monotonic()
    console = output.stderr()
    with make_client() as client:
        filters: dict[str, Any] = {}
        if not ids:
            filters["target_status"] = [target_status]
            if release is not None:
                filters["release_id"] = [resolve_release(client, release).id]
            if device:
                filters["device_id"] = device_ids(client, device)

        def poll() -> list[Deployment]:
            if ids:
                found: list[Deployment] = []
                for chunk in chunks(list(dict.fromkeys(ids))):
                    found.extend(client.deployments.list(id=chunk, limit=100).data)
                missing = set(ids) - {item.id for item in found}
                if missing:
                    raise CliError(
                        f"Unknown deployment(s): {', '.join(sorted(missing))}", ExitCode.REFUSED
                    )
                return found
            return list(iterate(client.deployments.list, **filters))

        live = (
            Live(console=console, auto_refresh=False, transient=False)
            if console.is_interactive
            else None
        )
        last_line = ""
        reasons_seen: set[tuple[str, str]] = set()
        deployments: list[Deployment] = []
        timed_out = False
        if live is not None:
            live.start()
        try:
            while True:
                deployments = poll()
                counts = Counter[str](item.status for item in deployments)
                done = sum(reached(item) for item in deployments)
                elapsed = time.monotonic() - started
                if live is not None:
                    live.update(
                        counts_table(counts, len(deployments), done, elapsed, timeout), refresh=True
                    )
                elif not as_json:
                    line = " · ".join(
                        f"{status} {count}" for status, count in sorted(counts.items())
                    )
                    line = f"{done}/{len(deployments)} reached target" + (
                        f" ({line})" if line else ""
                    )
                    if line != last_line:
                        console.print(f"[dim]{elapsed:5.1f}s[/dim] {line}")
                        last_line = line
                    details.print_reasons(deployments, console, reasons_seen)
                if all(settled(item) for item in deployments):
                    break
                if elapsed >= timeout:
                    timed_out = True
                    break
                time.sleep(max(0.0, min(interval, timeout - elapsed)))
        finally:
            if live is not None:
                live.stop()
        # Who is late or failed is told by device name: that is what people look for.
        unsettled = [item for item in deployments if not reached(item)][:20]
        names = device_names(client, [item.device_id for item in unsettled])

    def described(deployment_id: str) -> str:
        item = next(found for found in deployments if found.id == deployment_id)
        name = names.get(item.device_id, item.device_id)
        return f"{deployment_id}  {name}  {item.status}"

    counts = Counter[str](item.status for item in deployments)
    failed = sorted(item.id for item in deployments if item.error_status == "failed")
    pending = sorted(item.id for item in deployments if not settled(item))
    drifted = sorted(
        item.id
        for item in deployments
        if settled(item) and not reached(item) and item.id not in failed
    )
    if as_json:
        output.print_json(
            {
                "total": len(deployments),
                "reached": sum(reached(item) for item in deployments),
                "counts": dict(counts),
                "timed_out": timed_out,
                "failed": failed,
                "drifted": drifted,
                "pending": pending,
                # Why each failing or modified one is so (the server's extension).
                "reasons": {
                    item.id: details.reason(item) for item in deployments if details.reason(item)
                },
            }
        )
    if timed_out:
        if not as_json:
            console.print(
                f"[bold red]Timed out[/bold red] after {timeout:g}s: {len(pending)} of "
                f"{len(deployments)} deployments have not reached their target."
            )
            by_id = {item.id: item for item in deployments}
            for item in pending[:20]:
                console.print(f"  {escape(described(item))}  {escape(details.reason(by_id[item]))}")
        raise typer.Exit(int(ExitCode.TIMEOUT))
    if failed:
        if not as_json:
            console.print(f"[bold red]✗[/bold red] {len(failed)} deployment(s) failed:")
            by_id = {item.id: item for item in deployments}
            for item in failed[:20]:
                console.print(f"  {escape(described(item))}  {escape(details.reason(by_id[item]))}")
        raise typer.Exit(int(ExitCode.REFUSED))
    if not as_json:
        if not deployments:
            output.note("No deployments match; nothing to watch.")
        else:
            output.success(f"All {len(deployments)} deployments reached their target.")
