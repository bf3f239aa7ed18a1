#!/usr/bin/env bash
# Run the server: install what it needs, migrate the database, serve on $PORT (default 8000).
# With no DATABASE_URL this is an embedded SQLite file, ./chatkit.db. Extra arguments go to uvicorn.
# WEB_CONCURRENCY=N runs N worker processes (PostgreSQL only: SQLite has one writer).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_uv
"${UV[@]}" sync --frozen --no-dev --quiet
"${UV[@]}" run --frozen --no-dev alembic upgrade head
exec "${UV[@]}" run --frozen --no-dev uvicorn app.main:app \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" --loop uvloop --http httptools --proxy-headers "$@"
