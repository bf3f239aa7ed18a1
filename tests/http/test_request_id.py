"""Request ids: echoed when sane, generated otherwise, and present in log lines."""

from __future__ import annotations

import json
import logging

from app.logging import JsonFormatter, request_id_var


async def test_request_id_is_echoed_or_generated(client) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"

    for bad in ["", "x" * 200, "inject\u2028line"]:
        response = await client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8")})
        generated = response.headers["x-request-id"]
        assert generated != bad and len(generated) == 32


def test_log_lines_are_json_with_the_request_id() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello world" and line["request_id"] == "req-1"
    assert line["level"] == "INFO"
