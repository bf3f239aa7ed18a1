"""`python -m app.chat`: chat with a ChatKit server from the terminal.

Interactive by default (commands: /help); with `--message TEXT` it sends one message, prints
the answer and exits, non-zero when the turn ended with an error event or the server refused it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from chatkit.types import ErrorEvent, ThreadMetadata
from rich.console import Console
from rich.text import Text

from app.chat.client import DEFAULT_URL, ChatKitClient, ChatKitError
from app.chat.conversation import Conversation
from app.chat.render import TurnRenderer, show_attached, show_history, show_threads

HELP = """\
/threads [COUNT]   list your most recent threads, numbered
/switch N | ID     continue thread N of that list (or the thread with this id)
/new               start a new thread with the next message
/attach PATH       upload a file; it goes with your next message
/retry             answer the last message again, after an error that allows it
/quit              leave (Ctrl-D works too; Ctrl-C stops an answer)
Anything else is sent as a message, other /words included (the fake model's /add_task {...})."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.chat",
        description="Chat with a ChatKit server: the same protocol as the ChatKit web UI.",
        epilog="Interactive commands:\n" + HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    parser.add_argument(
        "--url",
        default=env("CHATKIT_URL", DEFAULT_URL),
        help="the server's protocol route (CHATKIT_URL; default %(default)s)",
    )
    identity = parser.add_mutually_exclusive_group()
    identity.add_argument("--token", help="a bearer token, e.g. a JWT (CHATKIT_TOKEN)")
    identity.add_argument(
        "--user",
        help="a user id sent as X-User-Id, for servers that trust identity headers (CHATKIT_USER)",
    )
    parser.add_argument(
        "--domain-key",
        default=env("CHATKIT_DOMAIN_KEY"),
        help="sent as X-ChatKit-Domain-Key, when the server requires one (CHATKIT_DOMAIN_KEY)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable), e.g. 'X-Proxy-Secret: ...'",
    )
    parser.add_argument(
        "--thread", metavar="ID", help="continue this thread instead of starting a new one"
    )
    parser.add_argument(
        "--attach",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="upload a file to go with the first message (repeatable)",
    )
    parser.add_argument(
        "--message",
        "-m",
        metavar="TEXT",
        help="send this message, print the answer and exit (no prompt)",
    )
    args = parser.parse_args(argv)
    if args.token is None and args.user is None:  # a flag wins over the environment
        args.token, args.user = env("CHATKIT_TOKEN"), env("CHATKIT_USER")
    if args.token:  # as on the server, a token wins over a user id
        args.user = None
    for header in args.header:
        if ":" not in header:
            parser.error(f"--header {header!r} is not 'NAME: VALUE'")
    return args


def accept_language(environ: Mapping[str, str] = os.environ) -> str | None:
    """The user's language as a browser would send it (`fr_FR.UTF-8` is `fr-FR`), from the
    locale variables in POSIX order; None for the C/POSIX locale or none at all."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := environ.get(name):
            tag = value.split(".")[0].split("@")[0].replace("_", "-")
            return None if tag in {"C", "POSIX"} or not tag else tag
    return None


def make_client(args: argparse.Namespace) -> ChatKitClient:
    headers = {
        name.strip(): value.strip()
        for name, _, value in (header.partition(":") for header in args.header)
    }
    language = accept_language()
    if language and "accept-language" not in {name.lower() for name in headers}:
        headers["Accept-Language"] = language  # the agent answers in it (RequestContext.locale)
    return ChatKitClient(
        args.url, token=args.token, user=args.user, domain_key=args.domain_key, headers=headers
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out, err = Console(), Console(stderr=True, soft_wrap=True)
    if args.message is not None:
        return asyncio.run(send_once(args, out, err))
    return interactive(args, out, err)


async def send_once(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Send `args.message` (with `args.attach`), print the answer; 0 if the turn went well."""
    async with make_client(args) as client:
        conversation = Conversation(client, args.thread)
        try:
            for path in args.attach:
                show_attached(err, await conversation.attach(path))
            with TurnRenderer(out, err) as view:
                outcome = await conversation.send(args.message, view)
        except (ChatKitError, OSError) as exc:
            show_failure(err, exc)
            return 1
    if outcome.thread_id:
        err.print(Text(f"thread: {outcome.thread_id}", style="dim"))
    return 1 if outcome.error else 0


def interactive(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Read commands and messages until /quit or end of input.

    Input is read outside the event loop; each line then runs in the same loop (one HTTP
    connection pool). Ctrl-C during an answer cancels it: the server keeps what was said.
    """
    with asyncio.Runner() as runner:
        client = make_client(args)
        session = Session(Conversation(client, args.thread), out, err)
        out.print(Text(f"Chatting with {args.url}. Type a message, or /help.", style="dim"))
        try:
            for path in args.attach:
                runner.run(session.handle(f"/attach {path}"))
            while True:
                try:
                    line = out.input("[bold]you›[/] ")
                except (EOFError, KeyboardInterrupt):
                    out.print()
                    break
                try:
                    if not runner.run(session.handle(line)):
                        break
                except KeyboardInterrupt:
                    try:
                        runner.run(session.conversation.stop())
                    except ChatKitError as exc:  # the answer goes on; say why it could not stop
                        err.print(Text(f"Could not stop the answer: {exc}", style="red"))
                    err.print(Text("(stopped)", style="dim"))
        finally:
            runner.run(client.aclose())
    return 0


class Session:
    """The interactive commands, on one conversation."""

    def __init__(self, conversation: Conversation, out: Console, err: Console) -> None:
        self.conversation = conversation
        self.out = out
        self.err = err
        self.listing: list[ThreadMetadata] = []
        self.last_error: ErrorEvent | None = None

    async def handle(self, line: str) -> bool:
        """Run one line of input; False means the user asked to leave."""
        line = line.strip()
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        try:
            match command:
                case "":
                    pass
                case "/quit" | "/exit":
                    return False
                case "/help":
                    self.out.print(Text(HELP))
                case "/new":
                    self.conversation.new()
                    self.err.print(Text("The next message starts a new thread.", style="dim"))
                case "/threads":
                    await self.threads(int(argument) if argument.isdigit() else 20)
                case "/switch":
                    await self.switch(argument)
                case "/attach":
                    show_attached(self.err, await self.conversation.attach(Path(argument)))
                case "/retry":
                    await self.retry()
                case _:
                    await self.send(line)
        except (ChatKitError, OSError) as exc:
            show_failure(self.err, exc)
        return True

    async def threads(self, count: int) -> None:
        page = await self.conversation.threads(limit=count)
        self.listing = page.data
        show_threads(self.out, page, self.conversation.thread_id)

    async def switch(self, target: str) -> None:
        if target.isdigit():
            if not self.listing:
                self.listing = (await self.conversation.threads()).data
            number = int(target)
            if not 1 <= number <= len(self.listing):
                raise ChatKitError(f"No thread {number}: /threads lists {len(self.listing)}.")
            target = self.listing[number - 1].id
        if not target:
            raise ChatKitError("Which thread? /switch N (from /threads) or /switch THREAD_ID")
        items = await self.conversation.switch(target)
        self.err.print(Text(f"Now in thread {target}.", style="dim"))
        show_history(self.out, items)

    async def send(self, text: str) -> None:
        with TurnRenderer(self.out, self.err, retry_hint="/retry to try again") as view:
            outcome = await self.conversation.send(text, view)
        self.last_error = outcome.error

    async def retry(self) -> None:
        if self.last_error is None or not self.last_error.allow_retry:
            raise ChatKitError("Nothing to retry: /retry follows an error that allows a retry.")
        with TurnRenderer(self.out, self.err, retry_hint="/retry to try again") as view:
            outcome = await self.conversation.retry(view)
        self.last_error = outcome.error


def show_failure(err: Console, exc: ChatKitError | OSError) -> None:
    """A refused request or an unreachable server, for a person."""
    if isinstance(exc, OSError) and not isinstance(exc, ChatKitError):
        text = f"Error: cannot read {exc.filename}: {exc.strerror}"
    else:
        text = f"Error: {exc}"
    err.print(Text(text, style="bold red"))
