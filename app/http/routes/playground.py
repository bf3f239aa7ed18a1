"""`GET /playground`: a ChatKit page served by this server, to see it work without a frontend.

The page loads ChatKit from OpenAI's CDN and points `api.url` at this server's `/chatkit`: same
origin, so no CORS setting is involved. It grants nothing the API would not: every request it
makes goes through `/chatkit` with the identity the person enters (a user id where the server
trusts `X-User-Id` in development, else a bearer token, pasted or fetched from
`PLAYGROUND_TOKEN_URL`). `config.json` tells the page which of those apply; it holds no secret.

Mounted only when `Settings.playground_on` (development, or `PLAYGROUND_ENABLED=true`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from app.config import Settings
from app.http.deps import ServicesDep

STATIC = Path(__file__).resolve().parent.parent / "static" / "playground"
CHATKIT_ORIGIN = "https://cdn.platform.openai.com"  # serves chatkit.js and ChatKit's frame

router = APIRouter(prefix="/playground", tags=["playground"], include_in_schema=False)


def content_security_policy(settings: Settings) -> str:
    """Scripts from this server and ChatKit's CDN only; requests to this server (and the token
    endpoint); no plugins, no framing of the page, no form posts elsewhere.

    `style-src 'unsafe-inline'` is for ChatKit's script, which styles the element it defines.
    """
    connect = ["'self'", CHATKIT_ORIGIN]
    if settings.playground_token_url:
        parts = urlsplit(settings.playground_token_url)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {CHATKIT_ORIGIN}",
            f"frame-src {CHATKIT_ORIGIN}",
            f"connect-src {' '.join(connect)}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def page_config(settings: Settings) -> dict[str, Any]:
    """What the page needs to know about this server: modes and limits, never a secret."""
    accept, methods = settings.attachment_allowed_mime_types, settings.auth_method_names
    return {
        "apiUrl": "/chatkit",
        "domainKey": settings.playground_domain_key,
        "model": settings.model_provider,
        "identity": {
            # Without a proxy secret the server trusts X-User-Id as is (development only).
            "userHeader": "headers" in methods and settings.auth_proxy_secret is None,
            "bearer": bool({"jwks", "hs256"} & set(methods)),
            "tokenUrl": settings.playground_token_url,
        },
        "domainKeyRequired": bool(settings.chatkit_domain_keys),
        "attachments": {
            "maxBytes": settings.attachment_max_bytes,
            "maxCount": settings.attachment_max_per_message,
            # ChatKit's `composer.attachments.accept`: MIME patterns to extensions (none listed).
            "accept": None if "*/*" in accept else {mime: [] for mime in accept},
        },
    }


@router.get("")
async def page(services: ServicesDep) -> FileResponse:
    return _file("index.html", "text/html; charset=utf-8", services.settings)


@router.get("/app.js")
async def script(services: ServicesDep) -> FileResponse:
    return _file("app.js", "text/javascript; charset=utf-8", services.settings)


@router.get("/app.css")
async def stylesheet(services: ServicesDep) -> FileResponse:
    return _file("app.css", "text/css; charset=utf-8", services.settings)


@router.get("/config.json")
async def config(services: ServicesDep) -> JSONResponse:
    settings = services.settings
    return JSONResponse(page_config(settings), headers=security_headers(settings))


def _file(name: str, media_type: str, settings: Settings) -> FileResponse:
    return FileResponse(STATIC / name, media_type=media_type, headers=security_headers(settings))
