"""The agent protocol: enroll, check in, upload events.

Check-in and event upload are the hot paths: ``async`` routes with a single dependency that
hand the whole request (authentication included) to one service call in one transaction,
run by ``Database.run``. The agent's identity comes only from its credential, never from
the request body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from esmd.api.deps import (
    AGENT_SECURITY,
    PUBLIC,
    AgentCallDep,
    AgentCredential,
    DatabaseDep,
    SettingsDep,
)
from esmd.api.params import ERRORS
from esmd.services import checkin as checkin_service
from esmd.services import enrollment, ingest, lifecycle
from esmd.services import verdicts as verdict_service
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models import (
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    EventAck,
    EventBatch,
)
from trapsapi.models_hashes import AgentVerdictQuery, AgentVerdicts
from trapsapi.models_lifecycle import RotatedSecret

router = APIRouter(tags=["agent"], responses=ERRORS)


@router.post(routes.AGENT_ENROLL, status_code=status.HTTP_201_CREATED, dependencies=[PUBLIC])
def enroll(
    body: EnrollRequest, request: Request, db: DatabaseDep, settings: SettingsDep
) -> EnrollResponse:
    """Trade an enrollment token for an agent ID and secret (the secret is shown once)."""
    servers = request.app.state.registry.servers_for(str(request.base_url))
    client = request.client.host if request.client else None
    return enrollment.enroll(db, settings, body, servers, client)


@router.post(routes.AGENT_CHECKIN, openapi_extra=AGENT_SECURITY)
async def checkin(body: CheckinRequest, call: AgentCallDep, request: Request) -> CheckinResponse:
    """Report status; receive the effective policy, pending actions and the server list."""
    alive = call.settings.agent_alive_window
    reply = await call.db.run(
        checkin_service.checkin, call.policies, call.credential, body, call.servers, alive
    )
    call.metrics.checkins += 1
    state = request.app.state
    state.liveness.learn(None, reply.agent_id)  # what the fast path remembers is older
    state.registry.saw_agent(reply.agent_id)
    state.notifier.saw_version(reply.policy.version)
    return reply


@router.post(routes.AGENT_EVENTS, openapi_extra=AGENT_SECURITY)
async def upload_events(body: EventBatch, call: AgentCallDep) -> EventAck:
    """Store a batch idempotently; the reply comes only after the commit."""
    ack = await call.db.run(ingest.ingest, call.credential, body)
    call.metrics.events_received += len(ack.acked)
    call.metrics.events_ingested += ack.inserted
    return ack


@router.post(routes.AGENT_ROTATE)
def rotate_credential(
    request: Request, db: DatabaseDep, credential: AgentCredential
) -> RotatedSecret:
    """A new secret for the calling agent; the old one works until the new one is used."""
    client = request.client.host if request.client else None
    return lifecycle.rotate(db, credential, client)


@router.post(routes.AGENT_VERDICTS)
def verdicts_for_agent(
    body: AgentVerdictQuery, db: DatabaseDep, credential: AgentCredential
) -> AgentVerdicts:
    """Verdicts (admin overrides and feeds) of hashes the agent has not been sent; the
    agent's own analysis of files it saw is stored, informational only."""
    check_storable(body)
    return verdict_service.answer_agent(db, credential, body)
