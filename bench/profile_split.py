"""Where each server's CPU goes, from `bench.run --profile`'s samples: shares by part, and the
milliseconds per turn they come to at the CPU per turn the same run measured.

    uv run python -m bench.run --repeat 5 --skip-scaling --profile "$(command -v py-spy)"
    uv run python -m bench.profile_split          # reads bench/results/*-profile-N.txt

Each sample is charged to the innermost frame that belongs to a known part (a SQLAlchemy call
made by the store is SQLAlchemy's; the store's own Python is the store's). The parts only this
server has (the database, its store and turn code, the edge) are what the reference, which
keeps everything in memory and checks nothing, does not pay.
"""

from __future__ import annotations

import json
from collections import Counter

from bench.run import ONE, REFERENCE, RESULTS

PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("database: SQLAlchemy", ("sqlalchemy/", "greenlet")),
    ("database: asyncpg", ("asyncpg/",)),
    ("store, turns, usage (app/store, app/turns)", ("app/store/", "app/turns/", "app/agent/usage")),
    ("edge: identity, limits, middleware (app/http)", ("app/http/", "jwt/")),
    ("this server's agent glue (app/agent, app/server)", ("app/",)),
    ("Agents SDK", ("agents/",)),
    ("OpenAI client", ("openai/",)),
    ("ChatKit SDK", ("chatkit/",)),
    ("pydantic", ("pydantic",)),
    ("HTTP client (httpx, httpcore)", ("httpx", "httpcore/")),
    ("HTTP server (uvicorn, starlette, fastapi)", ("uvicorn/", "h11/", "starlette/", "fastapi/")),
    ("asyncio", ("asyncio/",)),
]
ONLY_HERE = {PARTS[0][0], PARTS[1][0], PARTS[2][0], PARTS[3][0]}
OTHER = "other (interpreter, json, logging, ...)"


def part_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, markers in PARTS:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def samples(server: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in sorted(RESULTS.glob(f"{server.replace(' ', '-')}-profile-*.txt")):
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                counts[part_of(stack)] += int(count)
    return counts


def cpu_per_turn(server: str) -> float | None:
    """The median CPU per turn of the run the profiles came from (`bench/results/latest.json`)."""
    latest = RESULTS / "latest.json"
    if not latest.exists():
        return None
    rounds = json.loads(latest.read_text())["rounds"]
    values = sorted(r[server]["cpu_ms_per_turn"] for r in rounds if server in r)
    return values[len(values) // 2] if values else None


def main() -> None:
    for server in (REFERENCE, ONE):
        counts = samples(server)
        total = sum(counts.values())
        if not total:
            print(f"{server}: no samples in {RESULTS} (run bench.run with --profile)")
            continue
        cpu = cpu_per_turn(server)
        print(f"{server}: {total} samples; CPU per turn {cpu:.1f} ms" if cpu else server)
        only_here = 0.0
        for name, count in counts.most_common():
            share = count / total
            ms = f"{share * cpu:5.1f} ms" if cpu else ""
            mark = "  (only this server)" if name in ONLY_HERE else ""
            print(f"  {name:50} {100 * share:5.1f} %  {ms}{mark}")
            if name in ONLY_HERE:
                only_here += share
        if cpu:
            print(
                f"  what the reference does not do: {only_here * cpu:.1f} ms per turn; "
                f"the rest: {(1 - only_here) * cpu:.1f} ms"
            )


if __name__ == "__main__":
    main()
