"""esmd: the Traps Endpoint Security Manager (communication server and policy database).

``esmd init`` creates or upgrades the schema and the first superuser; ``esmd serve`` runs a
stateless FastAPI communication server. Any number of servers may share one database.
"""

__version__ = "0.1.0"
