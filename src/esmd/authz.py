"""Who may do what: one permission per route, one table from role to permissions.

Every route of the app declares exactly one :class:`Permission` (admin routes through
``esmd.api.deps.require``, public and agent routes through their marker dependencies);
``tests/esmd/test_esmd_matrix.py`` walks the route table and fails on a route without one.
"""

from __future__ import annotations

from enum import StrEnum

from trapsapi.enums import Role


class Permission(StrEnum):
    PUBLIC = "public"
    """No credential at all (login, enrollment, health, metrics, the API documents)."""
    AGENT = "agent"
    """An agent credential (``<agent_id>.<secret>``), never an admin token."""
    SESSION = "session"
    """Any signed-in admin, about their own session: whoami, logout, own password."""
    READ = "read"
    """Read agents, events, verdicts and enrollment tokens."""
    EVENTS_TRIAGE = "events:triage"
    HASHES_WRITE = "hashes:write"
    ENROLLMENT_WRITE = "enrollment-tokens:write"
    POLICIES_WRITE = "policies:write"
    ACTIONS_WRITE = "actions:write"
    AGENTS_WRITE = "agents:write"
    """Forget an agent, revoke its credential."""
    AUDIT_READ = "audit:read"
    FORENSICS_READ = "forensics:read"
    """List and download forensic bundles (process environments, command lines, memory):
    analysts and up, not viewers."""
    FORENSICS_DELETE = "forensics:delete"
    USERS_ADMIN = "users:admin"
    API_TOKENS_ADMIN = "api-tokens:admin"


_EVERY_ADMIN = frozenset({Permission.SESSION, Permission.READ})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _EVERY_ADMIN,
    Role.ANALYST: _EVERY_ADMIN | {Permission.EVENTS_TRIAGE, Permission.FORENSICS_READ},
    Role.SECURITY_ADMIN: _EVERY_ADMIN
    | {
        Permission.EVENTS_TRIAGE,
        Permission.HASHES_WRITE,
        Permission.ENROLLMENT_WRITE,
        Permission.POLICIES_WRITE,
        Permission.ACTIONS_WRITE,
        Permission.AGENTS_WRITE,
        Permission.AUDIT_READ,
        Permission.FORENSICS_READ,
        Permission.FORENSICS_DELETE,
    },
    Role.SUPERUSER: frozenset(Permission) - {Permission.PUBLIC, Permission.AGENT},
}
"""The authorization matrix; admin permissions only (PUBLIC and AGENT need no role)."""

ADMIN_PERMISSIONS = frozenset(Permission) - {Permission.PUBLIC, Permission.AGENT}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
