"""The policy database: engine and connection policy, column types, and tables."""
