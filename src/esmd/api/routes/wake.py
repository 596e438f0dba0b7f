"""The wake channel: an agent's long-poll, ended by a policy change or news for the agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from esmd.api.deps import AGENT_SECURITY, AgentCallDep
from esmd.api.params import ERRORS
from esmd.errors import TooManyRequests
from esmd.services.agents import authenticate_agent
from esmd.services.wake import Notifier
from trapsapi import routes
from trapsapi.models_wake import WakeReply

router = APIRouter(tags=["agent"], responses=ERRORS)


@router.get(
    routes.AGENT_WAIT,
    openapi_extra=AGENT_SECURITY,
    response_model=WakeReply,
    responses={204: {"description": "Nothing happened before the timeout: poll again."}},
)
async def wait(
    call: AgentCallDep,
    request: Request,
    policy_version: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="The policy version the agent applied.")
    ],
    timeout: Annotated[
        int | None, Query(ge=1, le=60, description="Seconds to hold (server maximum applies).")
    ] = None,
) -> Response:
    """Hold until the policy version differs from ``policy_version`` or something is pending
    for this agent (200: check in now), or until the timeout (204: poll again)."""
    agent = await call.db.run(authenticate_agent, call.credential)
    notifier: Notifier = request.app.state.notifier
    settings = call.settings
    if notifier.waiting >= settings.max_waiters:
        raise TooManyRequests("server busy: too many agents waiting", settings.retry_after_s)
    hold = min(timeout or settings.wait_timeout_s, settings.wait_timeout_s)
    reason = await notifier.wait(agent.agent_id, policy_version, hold)
    if reason is None:
        return Response(status_code=204)
    reply = WakeReply(reason=reason, policy_version=notifier.policy_version)  # type: ignore[arg-type]
    return JSONResponse(reply.model_dump(mode="json"))
