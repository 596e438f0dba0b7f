"""The Traps wire contract and API clients, shared by esmd, trapsd and trapsctl.

Only the standard library is imported here and in the client modules, so that the agent
(RSS budget 30 MB) and the scripted console start fast. The pydantic models that define
the OpenAPI contract live in :mod:`trapsapi.models` and are imported by the server only.
"""

API_VERSION = "v1"
API_PREFIX = f"/api/{API_VERSION}"
DEFAULT_PORT = 2125
__version__ = "0.1.0"
