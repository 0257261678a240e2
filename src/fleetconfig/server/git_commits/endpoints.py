"""HTTP endpoints of git commits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fleetconfig.server.auth.context import Context, reading, writing
from fleetconfig.server.expansions import expand_param
from fleetconfig.server.git_commits import wire
from fleetconfig.server.git_commits.schemas import CreateGitCommitRequest, render_git_commit
from fleetconfig.server.git_commits.service import GitCommitService, normalize_sha
from fleetconfig.server.kit.http import json_response, openapi_body, parse_body
from fleetconfig.server.kit.openapi import responses
from fleetconfig.server.kit.pagination import fetch_page
from fleetconfig.server.kit.params import (
    filter_param,
    list_envelope,
    order_by_param,
    page_param,
)
from fleetconfig.server.models import GitCommit

router = APIRouter(prefix="/git_commits", tags=["Git Commits"])


@router.get(
    "",
    operation_id="listGitCommits",
    responses=responses(wire.GitCommitList, "A page of git commits."),
)
async def list_git_commits(
    request: Request, ctx: Context = reading("git_commits:read")
) -> Response:
    query = request.query_params
    page, order = page_param(query), order_by_param(query)
    expand = expand_param(query, "git_commit", is_list=True)
    shas = [normalize_sha(sha) for sha in filter_param(query, "sha")]
    statement = GitCommitService(ctx.session, ctx.workspace_id).repository.search(
        filter_param(query, "id"), shas
    )
    rows, has_more, total = await fetch_page(
        ctx.session, statement, GitCommit, page, order, with_total=expand.total_count
    )
    return json_response(list_envelope([render_git_commit(r) for r in rows], page, has_more, total))


@router.post(
    "",
    operation_id="createGitCommit",
    responses=responses(wire.GitCommit, "The git commit (the existing one when its sha is known)."),
    openapi_extra=openapi_body(CreateGitCommitRequest),
)
async def create_git_commit(
    request: Request, ctx: Context = writing("git_commits:write")
) -> Response:
    body = await parse_body(request, CreateGitCommitRequest)
    row = await GitCommitService.of(ctx.recorder).create(body.sha, body.message, body.origin)
    await ctx.commit()
    return json_response(render_git_commit(row))


@router.get(
    "/{git_commit_id}",
    operation_id="getGitCommit",
    responses=responses(wire.GitCommit, "The git commit."),
)
async def get_git_commit(
    git_commit_id: str, ctx: Context = reading("git_commits:read")
) -> Response:
    row = await GitCommitService(ctx.session, ctx.workspace_id).get(git_commit_id)
    return json_response(render_git_commit(row))
