#!/usr/bin/env bash
# Run the whole test suite against PostgreSQL (TEST_DATABASE_URL, else DATABASE_URL if it is a
# PostgreSQL URL, else the local server on 127.0.0.1:5432) and an embedded SQLite file.
# Each run creates its own databases (chatkit_test_*) on that server. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --frozen --quiet

target="${TEST_DATABASE_URL:-${DATABASE_URL:-}}"
if [[ "$target" != postgres* ]] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "Starting the local PostgreSQL server..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  else
    echo "No PostgreSQL on 127.0.0.1:5432: start one or set TEST_DATABASE_URL." >&2
    exit 1
  fi
fi

exec uv run --frozen pytest "$@"
