#!/usr/bin/env bash
# Chat with a ChatKit server from the terminal (python -m app.chat), installing what it needs.
# The server is CHATKIT_URL (default http://127.0.0.1:8000/chatkit); the user is CHATKIT_TOKEN
# (a bearer token) or CHATKIT_USER (sent as X-User-Id). Arguments go to the client:
# scripts/chat.sh --user alice, scripts/chat.sh --user alice -m "Hello" --attach notes.txt.
# It runs in the caller's directory, so relative paths (--attach, /attach) mean what they say.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source "$root/scripts/lib.sh"

ensure_uv
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# `uv run` installs what is missing and removes nothing (a developer's test tools stay).
exec "${UV[@]}" run --quiet --project "$root" --frozen --no-dev python -m app.chat "$@"
