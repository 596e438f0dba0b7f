"""Every path of the API in one place, so server routes and clients cannot disagree."""

from __future__ import annotations

from trapsapi import API_PREFIX

AGENT_ENROLL = f"{API_PREFIX}/agent/enroll"
AGENT_CHECKIN = f"{API_PREFIX}/agent/checkin"
AGENT_EVENTS = f"{API_PREFIX}/agent/events"
AGENT_ROTATE = f"{API_PREFIX}/agent/rotate"
AGENT_VERDICTS = f"{API_PREFIX}/agent/verdicts"

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
HASH_FEEDS = f"{API_PREFIX}/hash-feeds"
HASH_FEED_IMPORT = f"{HASH_FEEDS}/import"
POLICIES = f"{API_PREFIX}/policies"
POLICY_HISTORY = f"{API_PREFIX}/policy-history"
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
ACTIONS = f"{API_PREFIX}/actions"
QUARANTINE = f"{API_PREFIX}/quarantine"
AGENT_ACTIONS = f"{API_PREFIX}/agent/actions"
