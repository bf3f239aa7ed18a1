"""File names as browsers send them in multipart bodies."""

from __future__ import annotations

import pytest

from app.http.multipart import clean_filename
from app.http.routes.attachments import content_disposition


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"photo.png", "photo.png"),
        ("résumé.pdf".encode(), "résumé.pdf"),
        (b"C:\\Users\\me\\report.txt", "report.txt"),  # old browsers send the full path
        (b"../../etc/passwd", "passwd"),
        (b"say %22hi%22.txt", 'say "hi".txt'),  # the HTML form encoding of a quote
        (b"a%0Ab.txt", "ab.txt"),  # no control characters survive
        (b"", "file"),
        (b"x" * 300, "x" * 300),  # too long for an attachment: the store refuses it
    ],
)
def test_clean_filename(raw: bytes, name: str) -> None:
    assert clean_filename(raw) == name


def test_content_disposition_is_ascii_with_an_exact_utf8_name() -> None:
    header = content_disposition("attachment", '100% "ünï";.txt')
    assert header == (
        'attachment; filename="100_ __n___.txt"; '
        "filename*=UTF-8''100%25%20%22%C3%BCn%C3%AF%22%3B.txt"
    )
    header.encode("latin-1")  # a valid header value
