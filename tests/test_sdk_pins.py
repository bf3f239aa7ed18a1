"""The SDK versions this code was read against: an upgrade must come with a fresh read.

`openai-chatkit` imports private symbols of `openai-agents`, and `ChatKitBackend.process`
mirrors `ChatKitServer.process`; both are pinned in pyproject.toml and upgraded together.
"""

from __future__ import annotations

import inspect

import agents
import chatkit.version
from chatkit.server import ChatKitServer


def test_pinned_sdk_versions() -> None:
    assert chatkit.version.__version__ == "1.6.5"
    assert agents.__version__ == "0.24.0"


def test_process_still_dispatches_as_mirrored() -> None:
    """`ChatKitBackend.process` relies on these two private dispatchers existing unchanged."""
    source = inspect.getsource(ChatKitServer.process)
    assert "StreamingResult(self._process_streaming(parsed_request, context))" in source
    assert "await self._process_non_streaming(parsed_request, context)" in source
    assert "TypeAdapter[ChatKitReq](ChatKitReq).validate_json(request)" in source
