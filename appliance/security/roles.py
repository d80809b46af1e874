"""Who may do what. Every route states the roles it allows (web_ui/guards.py); nothing is allowed by default."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"  # an officer identified at the kiosk (badge or PIN), or a staff account linked to one
    EQUIPMENT = "equipment"  # equipment staff: registries, check-out ledger, maintenance
    SUPERVISOR = "supervisor"  # approves or refuses access to recordings (000 Art. 20, 004 Art. 15)
    AUDITOR = "auditor"  # reads everything, changes nothing
    ADMIN = "admin"  # accounts and station settings
    KIOSK = "kiosk"  # not a person: the station's own display, before anyone has identified


# Roles a staff account may hold (the kiosk display is never an account).
ACCOUNT_ROLES = (Role.OFFICER, Role.EQUIPMENT, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
STAFF = (Role.EQUIPMENT, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)  # every signed-in staff role
READERS = STAFF  # who may read registries and the ledger (the auditor reads, never writes)
