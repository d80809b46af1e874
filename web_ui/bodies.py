"""The base of every JSON request body: an unknown field is refused (422), never silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
