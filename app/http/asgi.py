"""Small pure-ASGI helpers for the edge middleware: which paths are guarded, request bodies."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

CHATKIT_PATH = "/chatkit"
DIRECT_UPLOAD_PATH = "/chatkit/attachments"
ACCOUNT_PATHS = frozenset({"/chatkit/usage", "/chatkit/export", "/chatkit/me"})
"""The caller's own usage and data (`app/http/routes/account.py`)."""
GUARDED_PATHS = frozenset({CHATKIT_PATH, DIRECT_UPLOAD_PATH, *ACCOUNT_PATHS})

REATTACH_PREFIX = "/chatkit/threads/"


def is_reattach(path: str) -> bool:
    """`/chatkit/threads/{thread_id}/stream`, where a client re-attaches to a running turn."""
    return path.startswith(REATTACH_PREFIX) and path.rstrip("/").endswith("/stream")


def is_guarded(scope: Scope) -> bool:
    """Requests that must carry an identity and a domain key: the protocol route, uploads, the
    caller's usage and data, and re-attaching to a turn.

    Other `/chatkit/attachments/...` URLs are signed links a browser opens without headers; their
    routes check the signature. CORS preflights (`OPTIONS`) never need credentials.
    """
    return (
        scope["type"] == "http"
        and scope["method"] != "OPTIONS"
        and (scope["path"].rstrip("/") in GUARDED_PATHS or is_reattach(scope["path"]))
    )


def is_under_chatkit(scope: Scope) -> bool:
    """Any request to `/chatkit` or below (except preflights)."""
    if scope["type"] != "http" or scope["method"] == "OPTIONS":
        return False
    path: str = scope["path"]
    return path == CHATKIT_PATH or path.startswith(CHATKIT_PATH + "/")


def is_protocol_request(scope: Scope) -> bool:
    """A `POST /chatkit`, whose JSON body names the ChatKit request type."""
    return is_guarded(scope) and scope["path"].rstrip("/") == CHATKIT_PATH


class BodyTooLarge(Exception):
    """The request body passed the limit while it was being read."""


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """Read the whole request body, counting bytes as they arrive; stop just past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the already-read body, then the real channel (disconnects)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
