#!/usr/bin/env bash
# Run the server: install what it needs, migrate the database, serve on $PORT (default 8000).
# With no DATABASE_URL this is an embedded SQLite file, ./chatkit.db.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --frozen --no-dev --quiet
uv run --frozen --no-dev alembic upgrade head
exec uv run --frozen --no-dev uvicorn app.main:app \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" --proxy-headers "$@"
