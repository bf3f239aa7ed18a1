# Shared by the scripts (sourced): find or install uv, start the local PostgreSQL when it is down.

# Sets UV to a command that runs uv, installing it with pip when it is not on PATH.
ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=(uv)
    return
  fi
  python3 -m uv --version >/dev/null 2>&1 \
    || python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
  UV=(python3 -m uv)
}

# Starts this machine's PostgreSQL cluster if nothing answers on 127.0.0.1:5432.
ensure_local_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "No PostgreSQL on 127.0.0.1:5432: start one, or set TEST_DATABASE_URL." >&2
    return 1
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "Starting the local PostgreSQL $version cluster..."
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
    sleep 1
  done
  echo "PostgreSQL did not come up on 127.0.0.1:5432." >&2
  return 1
}

# Installs Debian's Chromium for the browser tests when /usr/bin/chromium is missing.
ensure_chromium() {
  if [[ -x /usr/bin/chromium ]]; then
    return 0
  fi
  echo "Installing Debian's chromium for the browser tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
}

ensure_pgbouncer() {
  if command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; then
    return 0
  fi
  echo "Installing Debian's pgbouncer for tests/store/test_pgbouncer.py..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq pgbouncer >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
}
