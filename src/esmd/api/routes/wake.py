"""The wake channel: an agent's long-poll, ended by a policy change or news for the agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from esmd.api.deps import AGENT_SECURITY, AgentCallDep
from esmd.api.params import ERRORS
from esmd.api.wake_reply import hold
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
    deliver: Annotated[
        bool,
        Query(
            description="Carry the news in the reply (the new policy, the pending actions, "
            "marked delivered) instead of only the reason to check in."
        ),
    ] = False,
) -> Response:
    """Hold until the policy version differs from ``policy_version`` or something is pending
    for this agent (200), or until the timeout (204: poll again). Wake-ups are paced by the
    server (``ESMD_WAKE_RATE``): a broadcast never arrives as a herd."""
    status, body = await hold(request.app.state, call.credential, policy_version, timeout, deliver)
    if status == 204:
        return Response(status_code=204)
    return Response(body, media_type="application/json")
