"""Accounts, roles, sessions and the limits that protect sign-in (issue 8)."""
