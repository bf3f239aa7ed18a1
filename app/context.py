"""The caller's identity, resolved once per request and passed to the store and the agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is calling. Every store query is scoped by `user_id`."""

    user_id: str
    auth_method: str
    """How the caller was authenticated: `jwt`, `headers` (a proxy secret checked), `development`
    (headers without one), or the label of a method of your own."""
    email: str | None = None
    name: str | None = None
    tier: str = "free"
    locale: str | None = None
    base_url: str = "http://localhost:8000"
    """Where clients reach this server, for absolute URLs (attachments)."""
    claims: dict[str, Any] = field(default_factory=dict)
