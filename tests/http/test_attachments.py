"""Attachments through HTTP: direct and two-phase uploads, downloads, signed URLs, deletion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import func, select, update

from app.cleanup import cleanup_orphans
from app.services import Services
from app.store.attachments import Attachments
from app.store.models import AttachmentContentRow, AttachmentRow, ItemRow
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, post, stream, user_input
from tests.helpers.database import owned_rows

MAX_BYTES = 4096
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # 1032 bytes, not valid UTF-8


APP_SETTINGS = {
    "attachment_max_bytes": MAX_BYTES,
    "attachment_allowed_mime_types": "image/*,application/pdf,text/*",
    "attachment_max_per_message": 2,
    "attachment_signing_secret": "test-signing-secret",
    "public_base_url": "https://chat.example.com",
}
"""This module's app (tests/conftest.py): small limits, a fixed key, a public URL."""


@pytest.fixture
def attachments(services: Services) -> Attachments:
    return services.attachments


@pytest.fixture
def uid() -> str:
    return f"user-{uuid4().hex[:12]}"


def as_user(user_id: str) -> dict[str, str]:
    return {"X-User-Id": user_id}


def local_path(url: str) -> str:
    """Any absolute URL, as a path and query the test client can request."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def local(url: str) -> str:
    """A URL built on PUBLIC_BASE_URL, as a path and query the test client can request."""
    parts = urlsplit(url)
    assert parts.netloc == "chat.example.com", url
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def upload(
    client: httpx.AsyncClient,
    user_id: str,
    name: str = "photo.png",
    data: bytes = PNG,
    mime_type: str | None = "image/png",
) -> httpx.Response:
    part = (name, data, mime_type) if mime_type else (name, data)
    return await client.post("/chatkit/attachments", files={"file": part}, headers=as_user(user_id))


async def uploaded(client: httpx.AsyncClient, user_id: str, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, user_id, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def rows_of(services: Services, user_id: str) -> tuple[int, int]:
    """(attachment rows, content rows) that belong to `user_id`."""
    metadata = await owned_rows(services.engine, AttachmentRow, user_id=user_id)
    async with services.engine.connect() as conn:
        content = await conn.scalar(
            select(func.count())
            .select_from(AttachmentContentRow)
            .join(AttachmentRow, AttachmentRow.id == AttachmentContentRow.id)
            .where(AttachmentRow.user_id == user_id)
        )
    return metadata, int(content or 0)


async def content_exists(services: Services, attachment_id: str) -> bool:
    async with services.engine.connect() as conn:
        found = await conn.scalar(
            select(AttachmentContentRow.id).where(AttachmentContentRow.id == attachment_id)
        )
    return found is not None


async def create_two_phase(
    client: httpx.AsyncClient, user_id: str, name: str, size: int, mime_type: str
) -> httpx.Response:
    payload = {
        "type": "attachments.create",
        "params": {"name": name, "size": size, "mime_type": mime_type},
    }
    return await post(client, user_id, payload)


# direct upload


async def test_direct_upload_returns_the_attachment_as_the_sdk_serializes_it(client, uid) -> None:
    body = await uploaded(client, uid)
    assert body["type"] == "image"
    assert body["id"].startswith("atc_")
    assert body["name"] == "photo.png"
    assert body["mime_type"] == "image/png"
    # Uploaded already: no descriptor; no thread yet; never the integration metadata.
    assert "upload_descriptor" not in body
    assert "thread_id" not in body
    assert "metadata" not in body
    preview = urlsplit(body["preview_url"])
    assert preview.scheme == "https" and preview.netloc == "chat.example.com"
    assert preview.path == f"/chatkit/attachments/{body['id']}/content"
    assert set(parse_qs(preview.query)) == {"expires", "sig"}


async def test_owner_downloads_the_bytes_with_safe_headers(client, uid) -> None:
    body = await uploaded(client, uid)
    response = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


async def test_files_download_as_attachments_with_an_rfc5987_name(client, uid) -> None:
    name = 'résumé "final".txt'
    body = await uploaded(client, uid, name=name, data="héllo".encode(), mime_type="text/plain")
    assert body["type"] == "file" and "preview_url" not in body
    response = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert response.status_code == 200
    assert response.content == "héllo".encode()
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="r_sum_ _final_.txt"')
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition


async def test_mime_type_is_guessed_from_the_name_when_the_browser_sends_none(client, uid) -> None:
    body = await uploaded(client, uid, name="paper.pdf", data=b"%PDF-1.4", mime_type=None)
    assert body["mime_type"] == "application/pdf"


async def test_another_user_gets_404_and_nobody_gets_401(client, uid) -> None:
    body = await uploaded(client, uid)
    url = f"/chatkit/attachments/{body['id']}/content"
    assert (await client.get(url, headers=as_user("someone-else"))).status_code == 404
    anonymous = await client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"


async def test_direct_upload_requires_identity(client) -> None:
    response = await client.post(
        "/chatkit/attachments", files={"file": ("a.png", PNG, "image/png")}
    )
    assert response.status_code == 401


async def test_too_large_upload_is_413_and_leaves_nothing(client, services, uid) -> None:
    response = await upload(client, uid, data=b"x" * (MAX_BYTES + 1), name="big.txt")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert await rows_of(services, uid) == (0, 0)


async def test_streamed_upload_stops_at_the_limit(client, services, uid) -> None:
    """No Content-Length: the reader counts the bytes and gives up past the limit."""
    boundary = "testboundary"
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        for _ in range(100):  # 100 × 1 KiB, far over the 4 KiB limit
            chunks_sent += 1
            yield b"y" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/chatkit/attachments",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **as_user(uid)},
    )
    assert response.status_code == 413
    assert chunks_sent < 100  # the server stopped reading early
    assert await rows_of(services, uid) == (0, 0)


async def test_disallowed_type_is_415_and_leaves_nothing(client, services, uid) -> None:
    response = await upload(client, uid, name="run.exe", data=b"MZ", mime_type="application/x-exe")
    assert response.status_code == 415
    assert "application/x-exe is not allowed" in response.json()["message"]
    assert await rows_of(services, uid) == (0, 0)


async def test_wildcard_types_are_allowed(client, uid) -> None:
    body = await uploaded(client, uid, name="a.webp", data=b"RIFF", mime_type="image/webp")
    assert body["mime_type"] == "image/webp"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"data": {"other": "x"}}, "no `file` file field"),
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, "multipart"),
    ],
)
async def test_a_body_without_a_file_field_is_400(client, uid, kwargs, reason) -> None:
    headers = {**as_user(uid), **kwargs.pop("headers", {})}
    if "data" in kwargs:
        kwargs["files"] = {"unused": ("", b"")}
    response = await client.post("/chatkit/attachments", headers=headers, **kwargs)
    assert response.status_code == 400, response.text
    assert reason in response.json()["message"]


@pytest.mark.parametrize(
    "attachment_id",
    ["%00", "%ED%A0%80", "atc_" + "0" * 61, "atc_a%20b", "atc_%C3%A9", "thr_0123", "%2e%2e"],
)
@pytest.mark.parametrize("route", ["content", "upload"])
@pytest.mark.parametrize("signed_in", [False, True])
async def test_malformed_ids_in_paths_are_404(client, uid, attachment_id, route, signed_in) -> None:
    """Refused before the database: no login needed to learn that such an id names nothing."""
    path = f"/chatkit/attachments/{attachment_id}/{route}?expires=1&sig=x"
    headers = as_user(uid) if signed_in else {}
    if route == "upload":
        response = await client.post(path, files={"file": ("a.txt", b"x")}, headers=headers)
    else:
        response = await client.get(path, headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


# MIME types and names

BAD_MIME_TYPES = {
    "crlf": "text/plain\r\nX-Injected: 1",
    "del": "text/pl\x7fain",
    "nul": "text/pl\x00ain",
    "no_subtype": "text/",
    "no_type": "/plain",
    "no_slash": "textplain",
    "space": "te xt/plain",
    "two_slashes": "text/plain/x",
    "non_ascii": "text/pl\u00e4in",
    "overlong": "text/" + "p" * 128,
}


def multipart_body(content_type: bytes, filename: bytes = b"a.txt") -> tuple[bytes, str]:
    """A one-file form with the part headers as given (httpx would refuse to send some)."""
    boundary = "fuzzboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: '
        + content_type
        + f"\r\n\r\nhello\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("mime_type", list(BAD_MIME_TYPES.values()), ids=list(BAD_MIME_TYPES))
async def test_malformed_mime_types_are_refused_everywhere(
    client, services, uid, mime_type
) -> None:
    """RFC 6838 `type/subtype`: anything else would reach a Content-Type header one day."""
    created = await create_two_phase(client, uid, "a.txt", 5, mime_type)
    assert created.status_code == 400, created.text
    if "\r\n" in mime_type:
        return  # in a multipart body, that is simply a second part header

    body, content_type = multipart_body(mime_type.encode("utf-8", "surrogatepass"))
    direct = await client.post(
        "/chatkit/attachments", content=body, headers={"Content-Type": content_type, **as_user(uid)}
    )
    assert direct.status_code == 400, direct.text
    assert direct.json()["error"] == "invalid_mime_type"

    pending = (await create_two_phase(client, uid, "b.txt", 5, "text/plain")).json()
    two_phase = await client.post(
        local(pending["upload_descriptor"]["url"]),
        content=body,
        headers={"Content-Type": content_type},
    )
    assert two_phase.status_code == 400, two_phase.text
    assert await rows_of(services, uid) == (1, 0)  # only the pending record


@pytest.mark.parametrize(
    ("declared", "stored"),
    [("text/plain; charset=utf-8", "text/plain"), ("Text/Plain", "text/plain"), ("", "text/plain")],
)
async def test_mime_parameters_are_dropped_and_types_lowercased(client, uid, declared, stored):
    created = await create_two_phase(client, uid, "a.txt", 5, declared)
    assert created.status_code == 200, created.text
    assert created.json()["mime_type"] == stored


async def test_a_malformed_type_stored_before_validation_downloads_as_bytes(
    client, services, uid
) -> None:
    body = await uploaded(client, uid, name="a.txt", data=b"hi", mime_type="text/plain")
    async with services.engine.begin() as conn:
        data = await conn.scalar(select(AttachmentRow.data).where(AttachmentRow.id == body["id"]))
        data["mime_type"] = "text/pl\x7fain\r\nX-Injected: 1"
        await conn.execute(
            update(AttachmentRow).where(AttachmentRow.id == body["id"]).values(data=data)
        )
    response = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "x-injected" not in response.headers


async def test_attachment_names_are_bounded(client, services, uid) -> None:
    """A 300 kB name once became a 900 kB Content-Disposition header."""
    assert (
        await create_two_phase(client, uid, "a" * 251 + ".txt", 5, "text/plain")
    ).status_code == 200
    too_long = await create_two_phase(client, uid, "a" * 252 + ".txt", 5, "text/plain")
    assert too_long.status_code == 400
    assert "255 characters" in too_long.json()["message"]
    direct = await upload(client, uid, name="a" * 252 + ".txt", data=b"x", mime_type="text/plain")
    assert direct.status_code == 400
    assert "255 characters" in direct.json()["message"]
    assert await rows_of(services, uid) == (1, 0)


async def test_a_negative_declared_size_is_400(client, services, uid) -> None:
    response = await create_two_phase(client, uid, "a.txt", -1, "text/plain")
    assert response.status_code == 400
    assert await rows_of(services, uid) == (0, 0)


# signed URLs


async def test_signed_preview_url_works_without_identity(client, uid) -> None:
    body = await uploaded(client, uid)
    response = await client.get(local(body["preview_url"]))
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["cache-control"].startswith("private, max-age=")


async def test_tampered_signature_is_403(client, uid) -> None:
    body = await uploaded(client, uid)
    url = local(body["preview_url"])
    path, query = url.split("?")
    params = parse_qs(query)
    forged_sig = params["sig"][0][:-2] + ("AA" if not params["sig"][0].endswith("AA") else "BB")
    later = int(params["expires"][0]) + 1
    for forged in (
        f"{path}?expires={params['expires'][0]}&sig={forged_sig}",
        f"{path}?expires={later}&sig={params['sig'][0]}",
        f"{path}?sig={params['sig'][0]}",
    ):
        response = await client.get(forged)
        assert response.status_code == 403, forged
    other = await uploaded(client, uid)
    # A valid signature for one attachment does not open another.
    response = await client.get(f"/chatkit/attachments/{other['id']}/content?{query}")
    assert response.status_code == 403


async def test_downloads_are_rate_limited_per_owner(database_url: str) -> None:
    """Signed links need no login: their downloads count against the owner, per minute."""
    settings = make_settings(
        database_url, rate_limit_requests_per_minute=3, attachment_signing_secret="s" * 32
    )
    async with running_app(settings) as running:
        client = running.client
        owner = f"user-{uuid4().hex[:12]}"
        body = await uploaded(client, owner)
        preview = local_path(body["preview_url"])
        statuses = [(await client.get(preview)).status_code for _ in range(3)]
        refused = await client.get(preview)
        as_owner = await client.get(
            f"/chatkit/attachments/{body['id']}/content", headers=as_user(owner)
        )
        someone_else = await uploaded(client, f"user-{uuid4().hex[:12]}")
        other = await client.get(local_path(someone_else["preview_url"]))
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert as_owner.status_code == 429  # the owner's own downloads count too
    assert other.status_code == 200  # another owner's files are not affected


async def test_expired_signature_is_403(client, attachments, uid) -> None:
    body = await uploaded(client, uid)
    past = time.time() - 3 * attachments.urls.ttl_seconds
    url = attachments.urls.url("content", body["id"], uid, "https://chat.example.com", now=past)
    response = await client.get(local(url))
    assert response.status_code == 403
    assert "expired" in response.json()["message"]


async def test_an_upload_signature_does_not_open_the_content(client, attachments, uid) -> None:
    body = await uploaded(client, uid)
    url = attachments.urls.url("upload", body["id"], uid, "https://chat.example.com")
    content_url = local(url).replace("/upload?", "/content?")
    assert (await client.get(content_url)).status_code == 403


# two-phase upload


async def test_two_phase_create_then_upload_to_the_signed_url(
    client, services, attachments, uid
) -> None:
    created = await create_two_phase(client, uid, "notes.txt", 5, "text/plain")
    assert created.status_code == 200, created.text
    body = created.json()
    assert "metadata" not in body
    descriptor = body["upload_descriptor"]
    assert descriptor["method"] == "POST"
    assert urlsplit(descriptor["url"]).path == f"/chatkit/attachments/{body['id']}/upload"
    assert not await content_exists(services, body["id"])

    # The browser posts the file without the app's Authorization header.
    response = await client.post(
        local(descriptor["url"]), files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert response.status_code == 200, response.text
    assert "upload_descriptor" not in response.json()
    stored = await attachments.find(body["id"])
    assert stored is not None and stored[0].upload_descriptor is None
    download = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert download.content == b"hello"

    again = await client.post(local(descriptor["url"]), files={"file": ("x.txt", b"x")})
    assert again.status_code == 409


async def test_two_phase_image_gets_a_signed_preview(client, uid) -> None:
    body = (await create_two_phase(client, uid, "p.png", len(PNG), "image/png")).json()
    upload_url = local(body["upload_descriptor"]["url"])
    assert (await client.post(upload_url, files={"file": ("p.png", PNG)})).status_code == 200
    preview = await client.get(local(body["preview_url"]))
    assert preview.status_code == 200 and preview.content == PNG


async def test_two_phase_upload_url_checks_the_signature(client, uid) -> None:
    body = (await create_two_phase(client, uid, "n.txt", 1, "text/plain")).json()
    path = urlsplit(body["upload_descriptor"]["url"]).path
    files = {"file": ("n.txt", b"x")}
    assert (await client.post(path, files=files)).status_code == 401
    assert (await client.post(path, files=files, headers=as_user("intruder"))).status_code == 404
    forged = await client.post(f"{path}?expires={int(time.time()) + 60}&sig=AAAA", files=files)
    assert forged.status_code == 403
    # The owner's own identity is enough, as with a custom fetch that adds it.
    assert (await client.post(path, files=files, headers=as_user(uid))).status_code == 200


async def test_two_phase_create_refuses_bad_type_and_size(client, services, uid) -> None:
    """Refused as a direct upload would be: 415 for the type, 413 for the size."""
    bad_type = await create_two_phase(client, uid, "a.zip", 10, "application/zip")
    assert bad_type.status_code == 415
    assert "application/zip is not allowed" in bad_type.json()["message"]
    too_big = await create_two_phase(client, uid, "a.txt", MAX_BYTES + 1, "text/plain")
    assert too_big.status_code == 413
    assert "limit" in too_big.json()["message"]
    assert await rows_of(services, uid) == (0, 0)


async def test_concurrent_uploads_to_one_url_one_wins_the_others_are_409(
    client, services, uid
) -> None:
    """Claiming the upload and writing it are one step: the first claim wins, the bytes stored
    are the winner's, and no later upload overwrites them."""
    body = (await create_two_phase(client, uid, "race.txt", 8, "text/plain")).json()
    url = local(body["upload_descriptor"]["url"])
    payloads = [f"upload-{n}".encode() for n in range(5)]

    responses = await asyncio.gather(
        *(client.post(url, files={"file": ("race.txt", data, "text/plain")}) for data in payloads)
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409], [r.text for r in responses]
    winner = payloads[[r.status_code for r in responses].index(200)]
    download = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert download.content == winner
    assert await rows_of(services, uid) == (1, 1)


async def upload_declared_ten(client: httpx.AsyncClient, uid: str, size: int) -> httpx.Response:
    """Create a two-phase upload of 10 bytes, then send `size` bytes to its URL."""
    body = (await create_two_phase(client, uid, "a.txt", 10, "text/plain")).json()
    return await client.post(
        local(body["upload_descriptor"]["url"]), files={"file": ("a.txt", b"z" * size)}
    )


@pytest.mark.parametrize("size", [11, MAX_BYTES + 1])
async def test_two_phase_upload_larger_than_its_declared_size_is_413_and_discarded(
    client, services, uid, size: int
) -> None:
    """The declared size is a limit, not a hint (an upload 1,000 times larger was accepted)."""
    response = await upload_declared_ten(client, uid, size)
    assert response.status_code == 413, response.text
    assert "10 bytes" in response.json()["message"]
    assert await rows_of(services, uid) == (0, 0)
    assert (await upload_declared_ten(client, uid, 10)).status_code == 200


# deletion, threads and cleanup


async def test_attachments_delete_removes_metadata_and_content(client, services, uid) -> None:
    body = await uploaded(client, uid)
    assert await content_exists(services, body["id"])
    response = await post(
        client, "intruder", {"type": "attachments.delete", "params": {"attachment_id": body["id"]}}
    )
    assert response.status_code == 404  # another user's id is not found, and untouched
    assert await content_exists(services, body["id"])

    payload = {"type": "attachments.delete", "params": {"attachment_id": body["id"]}}
    assert (await post(client, uid, payload)).status_code == 200
    assert await rows_of(services, uid) == (0, 0)
    assert not await content_exists(services, body["id"])
    gone = await client.get(f"/chatkit/attachments/{body['id']}/content", headers=as_user(uid))
    assert gone.status_code == 404


async def test_deleting_a_thread_removes_its_attachments_content(
    client, services, attachments, uid
) -> None:
    image = await uploaded(client, uid)
    unrelated = await uploaded(client, uid, name="keep.txt", data=b"k", mime_type="text/plain")
    events = await stream(
        client,
        uid,
        {"type": "threads.create", "params": {"input": user_input("look", [image["id"]])}},
    )
    thread_id = created_thread_id(events)
    attached = await attachments.find(image["id"])
    assert attached is not None and attached[0].thread_id == thread_id

    response = await post(
        client, uid, {"type": "threads.delete", "params": {"thread_id": thread_id}}
    )
    assert response.status_code == 200
    assert await attachments.find(image["id"]) is None
    assert not await content_exists(services, image["id"])
    assert await content_exists(services, unrelated["id"])


async def test_orphan_cleanup_removes_only_old_unattached_uploads(
    client, services, attachments, uid
) -> None:
    old_orphan = await uploaded(client, uid, name="old.txt", data=b"o", mime_type="text/plain")
    young_orphan = await uploaded(client, uid, name="new.txt", data=b"n", mime_type="text/plain")
    old_attached = await uploaded(client, uid, name="att.txt", data=b"a", mime_type="text/plain")
    await stream(
        client,
        uid,
        {"type": "threads.create", "params": {"input": user_input("x", [old_attached["id"]])}},
    )
    age = services.settings.attachment_orphan_max_age_seconds
    async with services.engine.begin() as conn:
        await conn.execute(
            update(AttachmentRow)
            .where(AttachmentRow.id.in_([old_orphan["id"], old_attached["id"]]))
            .values(created_at=AttachmentRow.created_at - timedelta(seconds=age + 60))
        )

    assert await cleanup_orphans(attachments, services.settings) >= 1
    assert await attachments.find(old_orphan["id"]) is None
    assert not await content_exists(services, old_orphan["id"])
    assert await attachments.find(young_orphan["id"]) is not None
    assert await attachments.find(old_attached["id"]) is not None
    assert await content_exists(services, old_attached["id"])


# messages


async def test_message_refuses_pending_foreign_and_too_many_attachments(client, uid) -> None:
    pending = (await create_two_phase(client, uid, "p.txt", 1, "text/plain")).json()
    response = await post(
        client,
        uid,
        {"type": "threads.create", "params": {"input": user_input("x", [pending["id"]])}},
    )
    assert response.status_code == 400
    assert "has not been uploaded" in response.json()["message"]

    theirs = await uploaded(client, "someone-else")
    response = await post(
        client,
        uid,
        {"type": "threads.create", "params": {"input": user_input("x", [theirs["id"]])}},
    )
    assert response.status_code == 404

    ids = [(await uploaded(client, uid))["id"] for _ in range(3)]
    response = await post(
        client, uid, {"type": "threads.create", "params": {"input": user_input("x", ids)}}
    )
    assert response.status_code == 400
    assert "at most 2 attachments" in response.json()["message"]


async def test_loaded_items_carry_freshly_signed_preview_urls(client, services, uid) -> None:
    image = await uploaded(client, uid)
    events = await stream(
        client,
        uid,
        {"type": "threads.create", "params": {"input": user_input("see", [image["id"]])}},
    )
    thread_id = created_thread_id(events)
    # Make the stored copy stale, as it is once its signature has expired.
    async with services.engine.begin() as conn:
        rows = (
            await conn.execute(
                select(ItemRow.id, ItemRow.data).where(ItemRow.thread_id == thread_id)
            )
        ).all()
        for row in rows:
            if row.data.get("type") == "user_message":
                data = dict(row.data)
                data["attachments"] = [
                    {**a, "preview_url": "https://chat.example.com/stale"}
                    for a in data["attachments"]
                ]
                await conn.execute(update(ItemRow).where(ItemRow.id == row.id).values(data=data))

    response = await post(client, uid, {"type": "items.list", "params": {"thread_id": thread_id}})
    message = next(i for i in response.json()["data"] if i["type"] == "user_message")
    preview = message["attachments"][0]["preview_url"]
    assert "stale" not in preview
    fetched = await client.get(local(preview))
    assert fetched.status_code == 200 and fetched.content == PNG


async def test_an_attachment_of_one_thread_cannot_join_another(client, uid) -> None:
    image = await uploaded(client, uid)
    first = created_thread_id(
        await stream(
            client,
            uid,
            {"type": "threads.create", "params": {"input": user_input("a", [image["id"]])}},
        )
    )
    second = created_thread_id(await stream(client, uid, create_thread_req("b")))
    assert first != second

    def again(thread_id: str) -> dict[str, Any]:
        return {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread_id, "input": user_input("again", [image["id"]])},
        }

    response = await post(client, uid, again(second))
    assert response.status_code == 400
    assert "belongs to another thread" in response.json()["message"]
    # In its own thread it may be sent again.
    assert (await post(client, uid, again(first))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not multipart at all",
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
        b"--b\r\n\x00\x01garbage\r\n\r\n--b--\r\n",
    ],
)
async def test_malformed_multipart_is_400_and_leaves_nothing(client, services, uid, body) -> None:
    response = await client.post(
        "/chatkit/attachments",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b", **as_user(uid)},
    )
    assert response.status_code == 400, response.text
    assert await rows_of(services, uid) == (0, 0)


async def test_cleanup_command_deletes_old_orphans(client, services, attachments, uid) -> None:
    from app.cleanup import main

    orphan = await uploaded(client, uid, name="o.txt", data=b"o", mime_type="text/plain")
    async with services.engine.begin() as conn:
        await conn.execute(
            update(AttachmentRow)
            .where(AttachmentRow.id == orphan["id"])
            .values(created_at=AttachmentRow.created_at - timedelta(days=2))
        )
    assert await main(services.settings) >= 1
    assert await attachments.find(orphan["id"]) is None
    assert not await content_exists(services, orphan["id"])
