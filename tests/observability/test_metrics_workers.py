"""Two workers (`python -m app.serve --workers 2`), one `/metrics`: with
`PROMETHEUS_MULTIPROC_DIR`, whichever worker answers the scrape reports what both counted."""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.chatkit import create_thread_req
from tests.helpers.server import app_server

TOKEN = "metrics-token-0123456789"
REQUESTS = 16
STREAMS = 4


def requests_counted(text: str, request_type: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "chatkit_requests_total"
        and sample.labels == {"request_type": request_type, "status": "200"}
    )


def test_two_workers_add_up(postgres_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    # A previous run's file (its counts would be added to this run's): removed at start.
    stale = directory / "counter_1.db"
    stale.write_bytes(b"not this run's")
    settings = {
        "AUTH_TRUST_USER_HEADERS": "true",
        "METRICS_ENABLED": "true",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "LOG_LEVEL": "WARNING",
    }
    args = ["--no-access-log", "--log-level", "warning"]
    user = {"X-User-Id": f"u-{uuid4().hex[:10]}", "Connection": "close"}
    with app_server(tmp_path, postgres_url, settings, uvicorn_args=args, workers=2) as server:
        url = f"{server.base_url}/chatkit"
        for _ in range(REQUESTS):  # a new connection each: either worker may take it
            listed = httpx.post(url, json={"type": "threads.list", "params": {}}, headers=user)
            assert listed.status_code == 200, listed.text
        for _ in range(STREAMS):
            created = httpx.post(url, json=create_thread_req(), headers=user, timeout=30)
            assert created.status_code == 200, created.text
        scrapes = [
            httpx.get(
                f"{server.base_url}/metrics",
                headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
            )
            for _ in range(6)
        ]
    for scrape in scrapes:
        assert scrape.status_code == 200, scrape.text
        assert requests_counted(scrape.text, "threads.list") == REQUESTS
        assert requests_counted(scrape.text, "threads.create") == STREAMS
    # Both workers wrote their own files there (one per process and kind of metric).
    pids = {re.sub(r"\D", "", path.stem.rsplit("_", 1)[-1]) for path in directory.glob("*.db")}
    assert len(pids) == 2, sorted(path.name for path in directory.iterdir())
    assert not stale.exists()
