"""A local OpenAI-compatible streaming endpoint in its own process, for benchmarks: the Responses
API and Chat Completions, both at once.

    python -m bench.model_endpoint --port 9000 --tokens 40 --delay-ms 5 [--failure 500|429|drop]

It is the endpoint the tests use (tests/helpers/fake_openai.py), served by uvicorn, with its
Files API; `GET /received` lists each model request's size (bodies are not kept).
"""

from __future__ import annotations

import argparse

import uvicorn

from tests.helpers.fake_openai import FakeOpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--failure", choices=["500", "429", "drop"], default=None)
    args = parser.parse_args()
    fake = FakeOpenAI(
        tokens=args.tokens,
        delay=args.delay_ms / 1000,
        failure=args.failure,
        keep_bodies=False,
    )
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
