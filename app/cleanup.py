"""Orphan attachment cleanup: uploads never attached to a message, older than a set age.

Runs inside the app every `ATTACHMENT_CLEANUP_INTERVAL_SECONDS` (0 turns that off), or once
from a scheduler: `python -m app.cleanup`. Running it on several replicas at once is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from app.config import ConfigurationError, Settings, load_settings
from app.services import Services
from app.store.attachments import Attachments

logger = logging.getLogger(__name__)


async def cleanup_orphans(attachments: Attachments, settings: Settings) -> int:
    """Delete old orphan uploads (metadata and content); returns how many went."""
    max_age = timedelta(seconds=settings.attachment_orphan_max_age_seconds)
    deleted = await attachments.delete_orphans(max_age)
    if deleted:
        logger.info("Deleted %d orphan attachments", deleted)
    return deleted


async def run_periodically(attachments: Attachments, settings: Settings) -> None:
    """Clean up forever; a failed round (database down) is logged and retried next time."""
    while True:
        await asyncio.sleep(settings.attachment_cleanup_interval_seconds)
        try:
            await cleanup_orphans(attachments, settings)
        except (SQLAlchemyError, OSError):
            logger.exception("Orphan attachment cleanup failed")


@asynccontextmanager
async def periodic_cleanup(attachments: Attachments, settings: Settings) -> AsyncIterator[None]:
    """The periodic cleanup, running for as long as the block does (unless turned off)."""
    if settings.attachment_cleanup_interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(run_periodically(attachments, settings), name="attachment-cleanup")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def main(settings: Settings | None = None) -> int:
    services = Services.build(settings or load_settings())
    async with services.lifespan(agent=False):
        return await cleanup_orphans(services.attachments, services.settings)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: no options yet, but `--help` says what running it does."""
    parser = argparse.ArgumentParser(
        prog="python -m app.cleanup",
        description=(
            "Delete orphan attachments (uploaded, never attached to a message) older than "
            "ATTACHMENT_ORPHAN_MAX_AGE_SECONDS, once, then exit. Settings come from the "
            "environment and .env, as the server's do. Safe to run on several replicas at once."
        ),
    )
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> None:
    parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    count = asyncio.run(main(settings))
    logger.info("Orphan attachment cleanup done: %d deleted", count)


if __name__ == "__main__":
    run()
