"""`python -m app.admin`: operators' commands on the database the settings name.

    python -m app.admin usage [--month 2026-11] [--json]   tokens per user and model, with cost
    python -m app.admin list-users                          every user with data, and their rows
    python -m app.admin export USER [-o FILE]               USER's data as a zip
    python -m app.admin erase USER --yes                    erase USER's data, print the counts

It reads the same settings as the server (`DATABASE_URL`, `ATTACHMENT_STORAGE`, `USAGE_PRICES`…).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from app.config import Settings, load_settings
from app.services import Services
from app.store.db import utcnow
from app.store.quotas import Periods, cost

MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_start(text: str) -> datetime:
    """`2026-11` as the first moment of that month."""
    match = MONTH.fullmatch(text)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise argparse.ArgumentTypeError(f"expected a month like 2026-11, got {text!r}")
    return datetime(int(match[1]), int(match[2]), 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.admin",
        description="Operators' commands: token usage, and a user's data on request.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    usage = commands.add_parser("usage", help="tokens per user and model in a month, with cost")
    usage.add_argument(
        "--month", type=month_start, help="the UTC month, like 2026-11 (default: this month)"
    )
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands.add_parser("list-users", help="every user with data, and how many rows they own")
    export = commands.add_parser("export", help="write a user's data as a zip")
    export.add_argument("user", help="the user id")
    export.add_argument(
        "-o", "--output", type=Path, help="the zip to write (default: export-USER.zip)"
    )
    erase = commands.add_parser("erase", help="erase every row and file of a user")
    erase.add_argument("user", help="the user id")
    erase.add_argument(
        "--yes", action="store_true", required=True, help="confirm: this cannot be undone"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    services = Services.build(settings)
    async with services.lifespan(agent=False):
        match args.command:
            case "usage":
                await usage_report(services, args.month or Periods.at(utcnow()).month, args, out)
            case "list-users":
                for user_id, counts in (await services.userdata.users()).items():
                    rows = ", ".join(f"{name}={n}" for name, n in sorted(counts.items()))
                    out.write(f"{user_id}\t{rows}\n")
            case "export":
                path = args.output or Path(f"export-{safe_file_part(args.user)}.zip")
                plan = await services.userdata.plan_export(args.user)
                with path.open("wb") as file:
                    async for chunk in services.userdata.export(plan):
                        file.write(chunk)
                out.write(f"Wrote {path} ({sum(plan.counts.values())} rows)\n")
            case "erase":
                counts = await services.userdata.erase(args.user)
                out.write(json.dumps({"user_id": args.user, "erased": counts}) + "\n")
    return 0


async def usage_report(
    services: Services, month: datetime, args: argparse.Namespace, out: TextIO
) -> None:
    periods = Periods.at(month)
    prices = services.settings.usage_prices
    rows: list[dict[str, Any]] = []
    for user_id, usage in await services.quota.tokens.per_user(periods.month, periods.next_month):
        row: dict[str, Any] = {
            "user_id": user_id,
            "model": usage.model,
            "turns": usage.turns,
            **usage.tokens.as_dict(),
        }
        if prices:
            row["cost"] = cost(prices, usage.model, usage.tokens)
        rows.append(row)
    if args.json:
        out.write(json.dumps({"month": f"{month:%Y-%m}", "rows": rows}) + "\n")
        return
    out.write(f"Token usage in {month:%Y-%m} (UTC)\n")
    columns = ["user_id", "model", "turns", "input_tokens", "cached_input_tokens"]
    columns += ["output_tokens", "reasoning_tokens", "total_tokens"] + (["cost"] if prices else [])
    table = [columns] + [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        out.write("\n")
    total = sum(row["total_tokens"] for row in rows)
    out.write(f"{len({row['user_id'] for row in rows})} users, {total} tokens\n")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def safe_file_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)[:80] or "user"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run(args, load_settings(), sys.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
