"""/docs describes `POST /chatkit`'s body, so that "Try it out" sends a real request."""

from __future__ import annotations

import json
import re
from typing import Any

from chatkit.types import ChatKitReq
from pydantic import TypeAdapter

from tests.helpers.apps import RunningApp
from tests.helpers.chatkit import sse_events


async def openapi(running: RunningApp) -> dict[str, Any]:
    response = await running.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_openapi_documents_the_chatkit_request_union(running: RunningApp) -> None:
    document = await openapi(running)
    body = document["paths"]["/chatkit"]["post"]["requestBody"]
    media = body["content"]["application/json"]
    assert body["required"] is True
    mapping = media["schema"]["discriminator"]["mapping"]
    assert {"threads.create", "threads.list", "items.list", "attachments.create"} <= set(mapping)
    schemas = document["components"]["schemas"]
    assert "ThreadsCreateReq" in schemas and "ThreadsAddUserMessageReq" in schemas
    # Every reference resolves inside the document (Swagger UI cannot follow `$defs`).
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(schemas)
    TypeAdapter(ChatKitReq).validate_python(media["example"])  # the example is a real request


async def test_the_documented_example_is_what_the_route_accepts(running: RunningApp) -> None:
    example = (await openapi(running))["paths"]["/chatkit"]["post"]["requestBody"]["content"][
        "application/json"
    ]["example"]
    response = await running.client.post("/chatkit", json=example, headers={"X-User-Id": "docs"})
    assert response.status_code == 200, response.text
    assert sse_events(response)[0]["type"] == "thread.created"
