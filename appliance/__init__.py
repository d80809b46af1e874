"""The records terminal station: domain, services, state and scheduling."""

__version__ = "0.1.0"
