"""The S3-compatible file storage: its SigV4 signer against botocore's, its behaviour against a
local S3 (moto's server on loopback), and the attachment routes on top of it."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import boto3
import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer
from sqlalchemy import update

from app.cleanup import cleanup_orphans
from app.store.files import FileStorageError
from app.store.models import AttachmentRow
from app.store.s3 import S3Config, S3FileStorage, sigv4_headers
from tests.conftest import make_settings
from tests.helpers.apps import RunningApp, running_app
from tests.helpers.chatkit import created_thread_id, post, stream, user_input
from tests.helpers.database import owned_rows
from tests.helpers.server import free_port

BUCKET = "chatkit-test"
FIXED = datetime(2026, 11, 23, 12, 34, 56, tzinfo=UTC)


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(("method", "payload"), [("PUT", b"\x00bytes\xff"), ("GET", b"")])
def test_sigv4_matches_botocore(monkeypatch, method, payload, token) -> None:
    config = S3Config(
        endpoint_url="http://127.0.0.1:9000",
        bucket=BUCKET,
        region="eu-west-3",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token=token,
        prefix="attachments/",
    )
    url = S3FileStorage(config).object_url("atc_0192abc")
    ours = sigv4_headers(config, method, url, payload, now=FIXED)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED.replace(tzinfo=None))
    request = AWSRequest(method=method, url=url, data=payload)
    credentials = Credentials("AKIDEXAMPLE", config.secret_access_key, token)
    botocore.auth.S3SigV4Auth(credentials, "s3", "eu-west-3").add_auth(request)

    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str):
    s3 = boto3.resource(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return s3.Bucket(BUCKET)


def keys(bucket) -> set[str]:
    return {obj.key for obj in bucket.objects.all()}


def s3_config(endpoint: str) -> S3Config:
    return S3Config(
        endpoint_url=endpoint,
        bucket=BUCKET,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
        prefix="attachments/",
    )


async def test_put_get_delete_round_trip(s3_endpoint, bucket) -> None:
    storage = S3FileStorage(s3_config(s3_endpoint))
    key = f"atc_{uuid4().hex}"
    try:
        assert await storage.get(key) is None
        await storage.put(key, b"\x00\x01 bytes \xff")
        assert f"attachments/{key}" in keys(bucket)
        assert await storage.get(key) == b"\x00\x01 bytes \xff"
        await storage.delete([key, "atc_never_existed"])
        assert f"attachments/{key}" not in keys(bucket)
    finally:
        await storage.aclose()


async def test_unreachable_storage_raises_a_storage_error() -> None:
    storage = S3FileStorage(s3_config(f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(FileStorageError):
            await storage.put("atc_x", b"x")
        await storage.delete(["atc_x"])  # best effort: logs, never raises
    finally:
        await storage.aclose()


def s3_settings(database_url: str, endpoint: str, **extra: object):
    return make_settings(
        database_url,
        attachment_storage="s3",
        attachment_s3_bucket=BUCKET,
        attachment_s3_endpoint_url=endpoint,
        attachment_s3_access_key_id="test",
        attachment_s3_secret_access_key="test",
        attachment_signing_secret="secret",
        **extra,
    )


@pytest.fixture(scope="module")
async def running(database_url: str, s3_endpoint: str) -> AsyncIterator[RunningApp]:
    """This module's app (and so its `services` and `client`): attachments in the local S3."""
    async with running_app(s3_settings(database_url, s3_endpoint)) as running:
        yield running


async def upload(client: httpx.AsyncClient, user: str, data: bytes = b"hello") -> str:
    response = await client.post(
        "/chatkit/attachments",
        files={"file": ("a.txt", data, "text/plain")},
        headers={"X-User-Id": user},
    )
    assert response.status_code == 200, response.text
    attachment_id: str = response.json()["id"]
    return attachment_id


async def test_http_upload_download_and_delete_through_s3(client, bucket) -> None:
    user = f"user-{uuid4().hex[:8]}"
    attachment_id = await upload(client, user, b"s3 bytes")
    assert f"attachments/{attachment_id}" in keys(bucket)
    download = await client.get(
        f"/chatkit/attachments/{attachment_id}/content", headers={"X-User-Id": user}
    )
    assert download.content == b"s3 bytes"

    payload = {"type": "attachments.delete", "params": {"attachment_id": attachment_id}}
    assert (await post(client, user, payload)).status_code == 200
    assert f"attachments/{attachment_id}" not in keys(bucket)


async def test_two_phase_upload_lands_in_s3(client, bucket) -> None:
    user = f"user-{uuid4().hex[:8]}"
    created = await post(
        client,
        user,
        {
            "type": "attachments.create",
            "params": {"name": "n.txt", "size": 2, "mime_type": "text/plain"},
        },
    )
    body = created.json()
    url = httpx.URL(body["upload_descriptor"]["url"])
    response = await client.post(
        f"{url.path}?{url.query.decode()}", files={"file": ("n.txt", b"hi")}
    )
    assert response.status_code == 200, response.text
    assert bucket.Object(f"attachments/{body['id']}").get()["Body"].read() == b"hi"


async def test_thread_deletion_and_orphan_cleanup_remove_objects(client, services, bucket) -> None:
    user = f"user-{uuid4().hex[:8]}"
    in_thread = await upload(client, user)
    orphan = await upload(client, user)
    events = await stream(
        client, user, {"type": "threads.create", "params": {"input": user_input("x", [in_thread])}}
    )
    thread_id = created_thread_id(events)
    response = await post(
        client, user, {"type": "threads.delete", "params": {"thread_id": thread_id}}
    )
    assert response.status_code == 200
    assert f"attachments/{in_thread}" not in keys(bucket)

    settings = services.settings
    async with services.engine.begin() as conn:
        await conn.execute(
            update(AttachmentRow)
            .where(AttachmentRow.id == orphan)
            .values(
                created_at=AttachmentRow.created_at
                - timedelta(seconds=settings.attachment_orphan_max_age_seconds + 60)
            )
        )
    assert f"attachments/{orphan}" in keys(bucket)
    await cleanup_orphans(services.attachments, settings)
    assert f"attachments/{orphan}" not in keys(bucket)


async def test_erase_removes_the_users_objects_and_only_theirs(client, services, bucket) -> None:
    user, other = f"user-{uuid4().hex[:8]}", f"user-{uuid4().hex[:8]}"
    in_thread, loose = await upload(client, user), await upload(client, user)
    await stream(
        client, user, {"type": "threads.create", "params": {"input": user_input("x", [in_thread])}}
    )
    theirs = await upload(client, other)
    assert {f"attachments/{key}" for key in (in_thread, loose, theirs)} <= keys(bucket)

    response = await client.delete(
        "/chatkit/me", headers={"X-User-Id": user, "X-Confirm-Erase": "erase my data"}
    )
    assert response.status_code == 200, response.text
    erased = response.json()["erased"]
    assert (erased["attachments"], erased["attachment_files"]) == (2, 2)
    assert f"attachments/{in_thread}" not in keys(bucket)
    assert f"attachments/{loose}" not in keys(bucket)
    assert f"attachments/{theirs}" in keys(bucket)
    assert await owned_rows(services.engine, AttachmentRow, user_id=user) == 0
    assert await owned_rows(services.engine, AttachmentRow, user_id=other) == 1


async def test_export_reads_the_bytes_from_s3(client, bucket) -> None:
    user = f"user-{uuid4().hex[:8]}"
    attachment_id = await upload(client, user, b"from the bucket")
    assert f"attachments/{attachment_id}" in keys(bucket)
    response = await client.get("/chatkit/export", headers={"X-User-Id": user})
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.read(f"attachments/{attachment_id}/a.txt") == b"from the bucket"


async def test_storage_outage_is_503_and_leaves_no_metadata(database_url) -> None:
    settings = s3_settings(database_url, f"http://127.0.0.1:{free_port()}")
    user = f"user-{uuid4().hex[:8]}"
    async with running_app(settings) as running:
        response = await running.client.post(
            "/chatkit/attachments",
            files={"file": ("a.txt", b"x", "text/plain")},
            headers={"X-User-Id": user},
        )
        assert response.status_code == 503
        assert response.json()["error"] == "storage_unavailable"
        assert await owned_rows(running.services.engine, AttachmentRow, user_id=user) == 0


async def test_a_failed_two_phase_write_leaves_the_upload_url_usable(database_url) -> None:
    """The upload is claimed before its bytes are written; a failed write undoes the claim."""
    port = free_port()
    user = f"user-{uuid4().hex[:8]}"
    async with running_app(s3_settings(database_url, f"http://127.0.0.1:{port}")) as running:
        client = running.client
        params = {"name": "n.txt", "size": 5, "mime_type": "text/plain"}
        created = await post(client, user, {"type": "attachments.create", "params": params})
        body = created.json()
        url = httpx.URL(body["upload_descriptor"]["url"])
        upload_path = f"{url.path}?{url.query.decode()}"
        files = {"file": ("n.txt", b"hello")}

        failed = await client.post(upload_path, files=files)  # nothing listens yet
        assert failed.status_code == 503
        stored = await running.services.attachments.find(body["id"])
        assert stored is not None and stored[0].upload_descriptor is not None

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            bucket = boto3.resource(
                "s3",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            ).create_bucket(Bucket=BUCKET)
            retried = await client.post(upload_path, files=files)
            assert retried.status_code == 200, retried.text
            assert bucket.Object(f"attachments/{body['id']}").get()["Body"].read() == b"hello"
        finally:
            server.stop()


def test_s3_storage_needs_bucket_and_keys(database_url) -> None:
    with pytest.raises(ValueError, match="ATTACHMENT_S3_BUCKET"):
        make_settings(database_url, attachment_storage="s3")
