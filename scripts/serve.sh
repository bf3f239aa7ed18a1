#!/usr/bin/env bash
# Run the server: install what it needs, migrate the database, serve on $HOST:$PORT
# (default 127.0.0.1:8000; HOST=0.0.0.0 to be reachable from other machines).
# With no settings this is the local demo (README, Quick start): the embedded SQLite file
# ./chatkit.db (or DATABASE_URL), the fake model, identity from X-User-Id for this machine only.
# Extra arguments go to uvicorn (through `python -m app.serve`, app/serve.py).
# WEB_CONCURRENCY=N runs N worker processes, one listening socket each (PostgreSQL only: SQLite
# has one writer).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_uv
# `uv run` installs what is missing and removes nothing (`uv sync --no-dev` would uninstall the
# development tools from the same virtualenv).
"${UV[@]}" run --frozen --no-dev alembic upgrade head
exec "${UV[@]}" run --frozen --no-dev python -m app.serve \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --loop uvloop --http httptools --proxy-headers "$@"
