#!/usr/bin/env bash
# Run the whole test suite against PostgreSQL (TEST_DATABASE_URL, else DATABASE_URL if it is a
# PostgreSQL URL, else the local server on 127.0.0.1:5432, started if it is down) and an embedded
# SQLite file. Each run creates, and drops afterwards, its own chatkit_test_* databases there.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_uv
"${UV[@]}" sync --frozen --quiet

target="${TEST_DATABASE_URL:-${DATABASE_URL:-}}"
if [[ "$target" != postgres* ]]; then
  ensure_local_postgres
fi

exec "${UV[@]}" run --frozen pytest "$@"
