"""Reading one file field from a `multipart/form-data` body as it streams in, within a limit.

Starlette's `request.form()` spools a whole upload before anyone can look at it; this reader
checks the file's type as soon as its part headers arrive and stops at the size limit, so an
oversized upload is refused after `max_bytes`, not after the client has sent everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from app.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for boundaries, part headers and small extra fields on top of the file itself."""


class MultipartError(BadRequest):
    """A body that is not the multipart form we expect."""


@dataclass(slots=True)
class FilePart:
    filename: str
    content_type: str | None
    data: bytes


@dataclass(slots=True)
class _State:
    """What the parser's callbacks have seen so far."""

    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    in_file: bool = False
    file_seen: bool = False
    file_started: FilePart | None = None
    checked: bool = False
    data: bytearray = field(default_factory=bytearray)
    too_large: bool = False
    ended: bool = False


def clean_filename(raw: bytes) -> str:
    """The base name a browser sent (some send a full path), as text, never empty.

    Browsers escape `"`, CR and LF in multipart file names as `%22`, `%0D` and `%0A` (the HTML
    form encoding algorithm); those three are undone, nothing else.
    """
    name = raw.decode("utf-8", errors="replace")
    for escaped, char in (("%22", '"'), ("%0D", "\r"), ("%0A", "\n")):
        name = name.replace(escaped, char)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name or "file"


async def read_file_part(
    request: Request,
    field_name: str,
    max_bytes: int,
    check: Callable[[FilePart], None] | None = None,
) -> FilePart:
    """The first `field_name` file of the body.

    `check` sees the part (name and type, no data yet) as soon as its headers are in and may
    raise to refuse it. Raises `PayloadTooLarge` past `max_bytes` and `MultipartError` for a
    body that is not multipart or has no such field.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise MultipartError(f"Expected multipart/form-data with a `{field_name}` file field")
    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(f"File is larger than the limit of {max_bytes} bytes")

    state = _State()
    parser = MultipartParser(boundary, _callbacks(state, field_name, max_bytes))
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(f"File is larger than the limit of {max_bytes} bytes")
            parser.write(chunk)
            if state.file_started is not None and not state.checked:
                state.checked = True
                if check is not None:
                    check(state.file_started)
            if state.too_large:
                raise PayloadTooLarge(f"File is larger than the limit of {max_bytes} bytes")
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(f"Malformed multipart body: {exc}") from exc
    except ClientDisconnect as exc:
        raise MultipartError("The client went away during the upload") from exc
    if state.file_started is None:
        raise MultipartError(f"The multipart body has no `{field_name}` file field")
    if not state.ended:
        # A body cut short (no closing boundary) would store a truncated file.
        raise MultipartError("The multipart body ended before its closing boundary")
    if not state.checked and check is not None:
        check(state.file_started)
    state.file_started.data = bytes(state.data)
    return state.file_started


def _callbacks(state: _State, field_name: str, max_bytes: int) -> MultipartCallbacks:
    def on_part_begin() -> None:
        state.headers = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_field.decode("latin-1").lower()] = bytes(state.header_value)
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(state.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("latin-1")
        filename = options.get(b"filename")
        state.in_file = name == field_name and filename is not None and not state.file_seen
        if state.in_file and filename is not None:
            state.file_seen = True
            part_type = state.headers.get("content-type")
            state.file_started = FilePart(
                filename=clean_filename(filename),
                content_type=part_type.decode("latin-1") if part_type else None,
                data=b"",
            )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state.in_file or state.too_large:
            return
        state.data += data[start:end]
        if len(state.data) > max_bytes:
            state.too_large = True

    def on_part_end() -> None:
        state.in_file = False

    def on_end() -> None:
        state.ended = True

    return {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
