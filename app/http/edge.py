"""The middleware stack in front of the routes, in request order:

CORS -> header sizes -> domain key -> body limit -> identity -> schema -> rate limit -> routes.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.config import Settings
from app.http.auth.identity import Identity, IdentityMiddleware
from app.http.middleware import (
    BodyLimitMiddleware,
    DomainKeyMiddleware,
    HeaderLimitMiddleware,
    SchemaMiddleware,
)
from app.http.ratelimit import RateLimiter, RateLimitMiddleware
from app.store.schema import Schema

CORS_ALLOW_HEADERS = [
    "Accept",
    "Accept-Language",
    "Authorization",
    "Content-Type",
    "X-ChatKit-Domain-Key",
    "X-Confirm-Erase",
    "X-Proxy-Secret",
    "X-Request-Id",
    "X-User-Email",
    "X-User-Id",
    "X-User-Name",
    "X-User-Tier",
]
CORS_EXPOSE_HEADERS = ["Content-Disposition", "Retry-After", "WWW-Authenticate", "X-Request-Id"]


def add_edge_middleware(
    app: FastAPI, settings: Settings, identity: Identity, limiter: RateLimiter, schema: Schema
) -> None:
    """Install the edge; `add_middleware` wraps outward, so the last one added runs first."""
    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    app.add_middleware(SchemaMiddleware, schema=schema)
    app.add_middleware(IdentityMiddleware, identity=identity)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.chatkit_max_body_bytes)
    app.add_middleware(DomainKeyMiddleware, keys=settings.chatkit_domain_keys)
    app.add_middleware(HeaderLimitMiddleware)
    any_origin = "*" in settings.cors_allow_origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if any_origin else settings.cors_allow_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_credentials=not any_origin,
        max_age=600,
    )
