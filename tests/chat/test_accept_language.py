"""The terminal client tells the server the user's language, as a browser does."""

from __future__ import annotations

import pytest

from app.chat.cli import accept_language, make_client, parse_args


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "fr_FR.UTF-8"}, "fr-FR"),
        ({"LANG": "en_US.UTF-8", "LC_ALL": "de_DE.UTF-8"}, "de-DE"),
        ({"LANG": "pt_BR", "LC_MESSAGES": "es_ES.utf8"}, "es-ES"),
        ({"LANG": "sr_RS@latin"}, "sr-RS"),
        ({"LANG": "C.UTF-8"}, None),
        ({"LC_ALL": "POSIX", "LANG": "fr_FR.UTF-8"}, None),
        ({}, None),
    ],
)
def test_the_locale_becomes_a_language_tag(environ: dict[str, str], expected: str | None) -> None:
    assert accept_language(environ) == expected


async def test_the_client_sends_accept_language_unless_a_header_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    async with make_client(parse_args(["--user", "alice"])) as client:
        assert client.http.headers["accept-language"] == "fr-FR"
    chosen = parse_args(["--user", "alice", "--header", "accept-language: ja"])
    async with make_client(chosen) as client:
        assert client.http.headers["accept-language"] == "ja"
    monkeypatch.setenv("LANG", "C.UTF-8")
    async with make_client(parse_args(["--user", "alice"])) as client:
        assert "accept-language" not in client.http.headers
