"""A standing fuzz test: no request, however odd, gets a 5xx or hangs.

Hypothesis draws requests from the SDK's own request models (`ChatKitReq`), with hostile strings
and wrongly typed values mixed in, and calls to the attachment routes with odd ids, signatures
and multipart bodies. Derandomized and bounded (`max_examples`), so CI is repeatable and quick.
"""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from chatkit.types import ChatKitReq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.config import Settings
from tests.conftest import make_settings
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, stream
from tests.helpers.fuzz import HOSTILE_TEXT, JSON_VALUES, TEXT, model_json

USER = "fuzz-user"
REQUEST_SECONDS = 10
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking or explaining: over a live app they keep every failed run's traceback and
    # took gigabytes. The failing request is in the assertion message as it was sent.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

REQUEST_MODELS = typing.get_args(typing.get_args(ChatKitReq)[0])
REQUESTS = st.one_of([model_json(model) for model in REQUEST_MODELS])
BODIES = st.one_of(
    REQUESTS.map(json.dumps),
    st.builds(lambda t, p: json.dumps({"type": t, "params": p}), TEXT, JSON_VALUES),
    st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")),
)


class Fixture:
    def __init__(self, client: httpx.AsyncClient, ids: dict[str, str]) -> None:
        self.client = client
        self.ids = ids

    def fill(self, body: str) -> str:
        """Real ids in place of the placeholders, as JSON strings."""
        for placeholder, real in self.ids.items():
            body = body.replace(json.dumps(placeholder), json.dumps(real))
        return body


@pytest.fixture(scope="module")
def fuzz_settings(postgres_url: str) -> Settings:
    return make_settings(
        postgres_url,
        rate_limit_requests_per_minute=0,
        rate_limit_daily_messages="free=unlimited",
        fake_model_tokens=5,
        attachment_signing_secret="s" * 32,
    )


@pytest.fixture(scope="module")
async def fuzz(fuzz_settings: Settings) -> AsyncIterator[Fixture]:
    async with running_app(fuzz_settings) as running:
        client = running.client
        events = await stream(client, USER, create_thread_req("Fuzz me"))
        item = next(e["item"] for e in events if e["type"] == "thread.item.done")
        upload = await client.post(
            "/chatkit/attachments",
            files={"file": ("a.txt", b"hello", "text/plain")},
            headers={"X-User-Id": USER},
        )
        ids = {
            "@thread@": created_thread_id(events),
            "@item@": item["id"],
            "@attachment@": upload.json()["id"],
        }
        yield Fixture(client, ids)


async def bounded(request: typing.Awaitable[httpx.Response]) -> httpx.Response:
    async with asyncio.timeout(REQUEST_SECONDS):  # a hang fails the test
        return await request


def assert_handled(response: httpx.Response, sent: Any) -> None:
    assert response.status_code < 500, (sent, response.text[:500])
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # Inside a stream, an unexpected exception shows as the SDK's generic error.
        assert '"code":"stream.error"' not in response.text, (sent, response.text[-500:])


USER_IDS = st.one_of(
    *[st.just(USER)] * 6,
    st.sampled_from(["a\x00b", "\x00", "\x1b[31m", "\x85", " ", "u" * 256]),
    st.text(alphabet=st.characters(max_codepoint=255), min_size=1, max_size=300),
)


@FUZZ
@given(body=BODIES, user_id=USER_IDS)
async def test_protocol_requests_never_fail_on_our_side(
    fuzz: Fixture, body: str, user_id: str
) -> None:
    body = fuzz.fill(body)
    headers = [(b"x-user-id", user_id.encode("latin-1")), (b"content-type", b"application/json")]
    response = await bounded(fuzz.client.post("/chatkit", content=raw(body), headers=headers))
    assert_handled(response, (user_id, body))


def raw(text: str) -> bytes:
    """UTF-8, lone surrogates included (as a careless client would send them)."""
    return text.encode("utf-8", "surrogatepass")


PATH_IDS = st.one_of(
    st.sampled_from(["@attachment@", "atc_0123abc", "%00", "%ff%fe", "..", "atc_%0d%0a"]),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80).map(
        lambda text: quote(text, safe="")
    ),
)
QUERIES = st.one_of(
    st.just(""),
    st.builds(
        lambda expires, sig: f"?expires={quote(raw(expires))}&sig={quote(raw(sig))}",
        st.one_of(st.integers().map(str), TEXT),
        TEXT,
    ),
)
PART_TYPES = st.one_of(
    st.none(), HOSTILE_TEXT, st.text(max_size=20), st.sampled_from(["text/plain", "image/png"])
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST"]),
    route=st.sampled_from(["content", "upload", ""]),
    attachment_id=PATH_IDS,
    query=QUERIES,
    filename=st.one_of(st.text(max_size=300), HOSTILE_TEXT),
    part_type=PART_TYPES,
    data=st.binary(max_size=256),
    signed_in=st.booleans(),
)
async def test_attachment_routes_never_fail_on_our_side(
    fuzz: Fixture,
    method: str,
    route: str,
    attachment_id: str,
    query: str,
    filename: str,
    part_type: str | None,
    data: bytes,
    signed_in: bool,
) -> None:
    attachment_id = fuzz.ids.get(attachment_id, attachment_id)
    path = f"/chatkit/attachments/{attachment_id}/{route}" if route else "/chatkit/attachments"
    headers = {"X-User-Id": USER} if signed_in else {}
    body, content_type = multipart(filename, part_type, data)
    request = fuzz.client.build_request(
        method,
        path + query,
        content=body if method == "POST" else None,
        headers={**headers, "Content-Type": content_type} if method == "POST" else headers,
    )
    response = await bounded(fuzz.client.send(request))
    assert_handled(response, (method, path + query, filename, part_type))


def multipart(filename: str, part_type: str | None, data: bytes) -> tuple[bytes, str]:
    boundary = "fuzzboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
    if part_type is not None:
        head += f"\r\nContent-Type: {part_type}"
    body = raw(head) + b"\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
