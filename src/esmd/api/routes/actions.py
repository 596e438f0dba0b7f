"""The action centre: admins create, list, show and cancel actions; agents report results.

Agents receive their actions in the check-in reply (``esmd.services.action_delivery``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from esmd.api.deps import (
    CurrentAgent,
    DatabaseDep,
    Reader,
    SettingsDep,
    require,
)
from esmd.api.params import ADMIN_ERRORS, ERRORS, NOT_FOUND, Cursor, Limit, Offset
from esmd.authz import Permission
from esmd.services import action_delivery, actions, forensics
from esmd.services.accounts import AdminIdentity
from trapsapi import routes
from trapsapi.enums_actions import ActionType
from trapsapi.models import Page
from trapsapi.models_actions import (
    ActionCreate,
    ActionDetail,
    ActionPublic,
    ActionResult,
    ActionResultAck,
    LogBundle,
    LogUpload,
    LogUploadAck,
    QuarantineEntry,
)
from trapsapi.models_forensics import ForensicUpload, ForensicUploadAck

router = APIRouter(tags=["actions"], responses=ADMIN_ERRORS)
agent_router = APIRouter(tags=["agent"], responses={**ERRORS, **NOT_FOUND})
ActionsWriter = Annotated[AdminIdentity, require(Permission.ACTIONS_WRITE)]
ActionId = Annotated[str, Path(max_length=32, description="The action's ID.")]
AgentIdPath = Annotated[str, Path(max_length=36)]


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(routes.ACTIONS, status_code=status.HTTP_201_CREATED, responses=NOT_FOUND)
def create_action(
    body: ActionCreate, db: DatabaseDep, settings: SettingsDep, admin: ActionsWriter
) -> ActionDetail:
    """Queue an action for an agent, the agents of a label, or the agents a query matches
    now; each gets it at its next check-in, until ``expires_in_s`` passes."""
    action_id = actions.create(db, settings, body, admin)
    return actions.show(db, action_id)


@router.get(routes.ACTIONS)
def list_actions(
    db: DatabaseDep,
    _admin: Reader,
    type: ActionType | None = None,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    created_by: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(max_length=64, description="1h, 7d or ISO-8601")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    cursor: Cursor = None,
) -> Page[ActionPublic]:
    """Newest first, with per-state progress counts; page with ``cursor`` or ``offset``."""
    return actions.list_actions(
        db,
        kind=type,
        agent_id=agent_id,
        created_by=created_by,
        since=since,
        limit=limit,
        offset=offset,
        cursor=cursor,
    )


@router.get(f"{routes.ACTIONS}/{{action_id}}", responses=NOT_FOUND)
def get_action(action_id: ActionId, db: DatabaseDep, _admin: Reader) -> ActionDetail:
    """The action with the state and result of every agent."""
    return actions.show(db, action_id)


@router.post(f"{routes.ACTIONS}/{{action_id}}/cancel", responses=NOT_FOUND)
def cancel_action(action_id: ActionId, db: DatabaseDep, admin: ActionsWriter) -> ActionDetail:
    """Cancel the action where it is still pending (409 if already cancelled or expired)."""
    actions.cancel(db, action_id, admin)
    return actions.show(db, action_id)


@router.get(f"{routes.ACTIONS}/{{action_id}}/agents/{{agent_id}}/logs", responses=NOT_FOUND)
def download_logs(
    action_id: ActionId, agent_id: AgentIdPath, db: DatabaseDep, _admin: Reader
) -> LogBundle:
    """The log bundle (gzip, base64) an agent uploaded for a retrieve_logs action."""
    return action_delivery.download_logs(db, action_id, agent_id)


@router.get(routes.QUARANTINE)
def list_quarantine(
    db: DatabaseDep,
    _admin: Reader,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[QuarantineEntry]:
    """Files in agents' quarantine, as their quarantine and restore action results tell."""
    return action_delivery.quarantine_view(db, agent_id, limit, offset)


@agent_router.post(f"{routes.AGENT_ACTIONS}/{{action_id}}/result")
def report_result(
    action_id: ActionId,
    body: ActionResult,
    request: Request,
    db: DatabaseDep,
    agent: CurrentAgent,
) -> ActionResultAck:
    """The agent's result of one of its actions; idempotent (a repeat changes nothing)."""
    return action_delivery.report_result(db, agent, action_id, body, _client(request))


@agent_router.post(f"{routes.AGENT_ACTIONS}/{{action_id}}/logs")
def upload_logs(
    action_id: ActionId,
    body: LogUpload,
    request: Request,
    db: DatabaseDep,
    agent: CurrentAgent,
) -> LogUploadAck:
    """The log bundle of a retrieve_logs action (gzip, base64; at most 2 MiB); idempotent."""
    return action_delivery.upload_logs(db, agent, action_id, body, _client(request))


@agent_router.post(f"{routes.AGENT_ACTIONS}/{{action_id}}/forensics")
def upload_forensics(
    action_id: ActionId,
    body: ForensicUpload,
    request: Request,
    db: DatabaseDep,
    agent: CurrentAgent,
) -> ForensicUploadAck:
    """One forensic bundle of a retrieve_forensics action (gzip, base64; at most 2 MiB);
    idempotent per bundle."""
    return forensics.upload(db, agent, action_id, body, _client(request))
