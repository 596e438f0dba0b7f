"""Policies (apply, list, show, delete, history) and what targets them on agents (labels,
group), plus ``explain``: which policy won each setting of an agent, and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, status
from sqlalchemy import select, update

from esmd.api.deps import DatabaseDep, Reader, require
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.authz import Permission
from esmd.db.tables import AGENTS
from esmd.errors import NotFound
from esmd.services import policies as service
from esmd.services.accounts import AdminIdentity
from esmd.services.audit import audit
from esmd.services.policy import PolicyCache
from esmd.services.wake import credentials_changed
from trapsapi import routes
from trapsapi.models import Page
from trapsapi.models_policies import (
    AgentGroup,
    AgentLabels,
    AgentTargeting,
    PolicyApplyResult,
    PolicyExplain,
    PolicyHistoryEntry,
    PolicyRecord,
)

router = APIRouter(tags=["policies"], responses=ADMIN_ERRORS)
PolicyWriter = Annotated[AdminIdentity, require(Permission.POLICIES_WRITE)]
PolicyName = Annotated[str, Path(max_length=64, description="The policy's name.")]
POLICY_FILE_BODY = Body(
    description='A policy file as JSON: {"policies": [{name, priority, targets, rules}, ...]} '
    "(see docs/policies.md).",
)
POLICY_FILE_EXAMPLE = {
    "policies": [
        {
            "name": "web-servers",
            "description": "Web front ends: block unknown binaries in /tmp, alert on shells.",
            "priority": 10,
            "targets": {
                "include": {"labels": ["web"], "hostnames": ["web-*"]},
                "exclude": {"hostnames": ["web-canary-*"]},
            },
            "rules": {
                "malware": {"mode": "prevention", "user_alert": True},
                "restrictions": {"mode": "prevention"},
                "child_process": {"mode": "notification"},
            },
        }
    ]
}
POLICY_FILE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                # The body is validated by parse_policy_file (one clear line naming the
                # field), so FastAPI sees Any: the schema is documented here instead.
                "schema": {"$ref": "#/components/schemas/PolicyFile", "title": "PolicyFile"},
                "example": POLICY_FILE_EXAMPLE,
            }
        },
    }
}


@router.get(routes.POLICIES)
def list_policies(db: DatabaseDep, _admin: Reader) -> Page[PolicyRecord]:
    """Every policy, by name."""
    rows = service.list_policies(db)
    return Page[PolicyRecord](data=rows, count=len(rows))


@router.post(routes.POLICIES, openapi_extra=POLICY_FILE_OPENAPI)
def apply_policies(
    body: Annotated[Any, POLICY_FILE_BODY],
    db: DatabaseDep,
    admin: PolicyWriter,
    dry_run: Annotated[
        bool, Query(description="Only validate and say what would change (the diff).")
    ] = False,
) -> PolicyApplyResult:
    """Create or update each policy by name, all or nothing; a change makes a new version."""
    return service.apply_policies(db, body, admin.username, admin.source_ip, dry_run=dry_run)


@router.post(routes.POLICY_DIFF, openapi_extra=POLICY_FILE_OPENAPI)
def diff_policies(
    body: Annotated[Any, POLICY_FILE_BODY], db: DatabaseDep, _admin: Reader
) -> PolicyApplyResult:
    """What applying the file would change, policy by policy; writes nothing, so every admin
    may ask (``apply?dry_run=true`` is the same answer for those who may apply)."""
    return service.apply_policies(db, body, _admin.username, None, dry_run=True)


@router.get(routes.POLICY_HISTORY)
def policy_history(
    db: DatabaseDep,
    _admin: Reader,
    policy: Annotated[str | None, Query(max_length=64, description="Only this policy.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[PolicyHistoryEntry]:
    """Newest version first."""
    rows = service.history(db, policy, limit, offset)
    return Page[PolicyHistoryEntry](data=rows, count=len(rows))


@router.get(f"{routes.POLICIES}/{{policy_name}}", responses=NOT_FOUND)
def get_policy(policy_name: PolicyName, db: DatabaseDep, _admin: Reader) -> PolicyRecord:
    return service.get_policy(db, policy_name)


@router.delete(
    f"{routes.POLICIES}/{{policy_name}}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
def delete_policy(policy_name: PolicyName, db: DatabaseDep, admin: PolicyWriter) -> None:
    service.delete_policy(db, policy_name, admin.username, admin.source_ip)


def _set_agent(db: Any, agent_id: str, admin: AdminIdentity, action: str, **values: Any) -> Any:
    with db.write_session() as session:
        connection = session.connection()
        before = connection.execute(
            select(AGENTS.c.labels, AGENTS.c.group_name).where(AGENTS.c.agent_id == agent_id)
        ).first()
        if before is None:
            raise NotFound(f"no agent {agent_id!r}")
        connection.execute(update(AGENTS).where(AGENTS.c.agent_id == agent_id).values(**values))
        # Every process forgets what it remembers of the agent (a check-in answered from
        # memory, esmd.services.liveness): its next check-in is served the new targeting.
        credentials_changed(connection, agent_id)
        previous = {"labels": list(before.labels or []), "group": before.group_name}
        current = {
            **previous,
            **{"group" if k == "group_name" else k: v for k, v in values.items()},
        }
        audit(
            session,
            admin.username,
            action,
            agent_id,
            {"before": previous, "after": current},
            source_ip=admin.source_ip,
        )
    return AgentTargeting(agent_id=agent_id, labels=current["labels"], group=current["group"])


@router.put(f"{routes.AGENTS}/{{agent_id}}/labels", responses=NOT_FOUND)
def set_agent_labels(
    agent_id: str, body: AgentLabels, db: DatabaseDep, admin: PolicyWriter
) -> AgentTargeting:
    """Replace the agent's labels (policies target them); takes effect at its next check-in."""
    labels = sorted(set(body.labels))
    result: AgentTargeting = _set_agent(db, agent_id, admin, "agent.set_labels", labels=labels)
    return result


@router.put(f"{routes.AGENTS}/{{agent_id}}/group", responses=NOT_FOUND)
def set_agent_group(
    agent_id: str, body: AgentGroup, db: DatabaseDep, admin: PolicyWriter
) -> AgentTargeting:
    """Put the agent in a group (``null``: none); takes effect at its next check-in."""
    result: AgentTargeting = _set_agent(
        db, agent_id, admin, "agent.set_group", group_name=body.group
    )
    return result


@router.get(f"{routes.AGENTS}/{{agent_id}}/policy/explain", responses=NOT_FOUND)
def explain_agent_policy(
    agent_id: str, request: Request, db: DatabaseDep, _admin: Reader
) -> PolicyExplain:
    """The agent's effective policy, and for each setting the policy that won it and why."""
    cache: PolicyCache = request.app.state.policies
    return service.explain(db, cache, agent_id)
