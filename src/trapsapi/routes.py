"""Every path of the API in one place, so server routes and clients cannot disagree."""

from __future__ import annotations

from trapsapi import API_PREFIX

AGENT_ENROLL = f"{API_PREFIX}/agent/enroll"
AGENT_CHECKIN = f"{API_PREFIX}/agent/checkin"
AGENT_EVENTS = f"{API_PREFIX}/agent/events"

LOGIN = f"{API_PREFIX}/auth/login"
LOGOUT = f"{API_PREFIX}/auth/logout"
WHOAMI = f"{API_PREFIX}/auth/whoami"
AGENTS = f"{API_PREFIX}/agents"
EVENTS = f"{API_PREFIX}/events"
HASHES = f"{API_PREFIX}/hashes"
ENROLLMENT_TOKENS = f"{API_PREFIX}/enrollment-tokens"
PASSWORD = f"{API_PREFIX}/auth/password"
EVENT_COUNTS = f"{API_PREFIX}/events/counts"
USERS = f"{API_PREFIX}/users"
API_TOKENS = f"{API_PREFIX}/api-tokens"
AUDIT = f"{API_PREFIX}/audit"
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
AGENT_WAIT = f"{API_PREFIX}/agent/wait"
SERVERS = f"{API_PREFIX}/servers"
