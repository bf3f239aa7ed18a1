# The ChatKit backend image: dependencies from uv.lock, run as a non-root user on $PORT.
# Build: docker build -t chatkit-backend .   Run: docker run -p 8000:8000 -e DATABASE_URL=... chatkit-backend

ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- Build stage: resolve nothing, install exactly what uv.lock pins -------------------------
# No BuildKit cache mount for uv's cache: Railway only accepts cache mounts whose id names the
# service, which a portable Dockerfile cannot. Copying the lock files first keeps the layer cache.
FROM ${PYTHON_IMAGE} AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=0 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# --- Runtime stage: the virtualenv and the code, no build tools -------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown app:app /app/data
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY alembic.ini pyproject.toml ./
COPY migrations ./migrations
COPY app ./app

# PORT is injected by Railway and Fly, and so is DATABASE_URL; without one the image runs on an
# SQLite file in /app/data (the one directory the app user may write; mount a volume there). GRACEFUL_SHUTDOWN_SECONDS bounds how long open streams may
# run after SIGTERM; interrupted ones then get up to 5 s to save their partial replies. Keep the
# sum below the platform's kill timeout (Fly kill_timeout, Railway drainingSeconds, compose
# stop_grace_period: 30 s in this repository's files).
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    GRACEFUL_SHUTDOWN_SECONDS=20 \
    DATABASE_URL=sqlite+aiosqlite:////app/data/chatkit.db

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Platforms run migrations as a separate step (`alembic upgrade head`): the app never migrates
# PostgreSQL (the SQLite file of a volume-only run migrates itself at startup).
# exec: app.serve becomes uvicorn, which is PID 1 and receives SIGTERM itself; with
# WEB_CONCURRENCY=N it supervises N uvicorn workers instead, one listening socket each, and passes
# SIGTERM on (app/serve.py; docs/deploy.md, "Scaling"). Forwarded headers are trusted from any
# address because the platform proxy is the only way in. uvloop and httptools (uvicorn[standard])
# are named, so that an image without them fails at start rather than serving slower.
CMD ["/bin/sh", "-c", "exec python -m app.serve --host 0.0.0.0 --port \"${PORT:-8000}\" --loop uvloop --http httptools --proxy-headers --forwarded-allow-ips '*' --timeout-keep-alive 75 --timeout-graceful-shutdown \"${GRACEFUL_SHUTDOWN_SECONDS:-20}\""]
