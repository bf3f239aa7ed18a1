"""Read what the runtime image runs from the Dockerfile itself, so tests cannot drift from it.

Only what this repository's Dockerfile uses is understood: line continuations, comments, and in
the last stage `ENV k=v ...`, exec-form (JSON) `CMD` and `HEALTHCHECK ... CMD`, and `COPY` from
the build context.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from app.store.db import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


@dataclass
class RuntimeImage:
    """The last stage of a Dockerfile."""

    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)
    """Build-context paths copied into the stage (not those copied from another stage)."""

    def layout(self, root: Path) -> Path:
        """Recreate the image's working directory at `root`: links to the copied paths only.

        Running from there proves the image has what it needs, and keeps a developer's `.env` in
        the checkout out of the process, as `.dockerignore` keeps it out of the image.
        """
        root.mkdir(parents=True, exist_ok=True)
        for name in self.copied:
            (root / name).symlink_to(PROJECT_ROOT / name)
        return root

    def environment(self) -> dict[str, str]:
        """The image's ENV, less PATH (whose virtualenv is the test's own)."""
        return {key: value for key, value in self.env.items() if key != "PATH"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def read_runtime_image(path: Path = DOCKERFILE) -> RuntimeImage:
    stages: list[RuntimeImage] = []
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "FROM":
            stages.append(RuntimeImage())
        elif not stages:
            continue
        elif keyword == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                stages[-1].env[key] = value
        elif keyword == "CMD":
            stages[-1].cmd = json.loads(arguments)
        elif keyword == "HEALTHCHECK":
            stages[-1].healthcheck = json.loads(arguments.split(" CMD ", 1)[1])
        elif keyword == "COPY" and not arguments.startswith("--from"):
            stages[-1].copied.extend(shlex.split(arguments)[:-1])
    assert stages, f"no FROM in {path}"
    return stages[-1]
