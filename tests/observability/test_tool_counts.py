"""Tool calls counted by outcome from the run's hooks, with the Agents SDK's tracing off: the
real `Runner` drives scripted tool calls, and the counter is read from the registry."""

from __future__ import annotations

from typing import Any

from agents import Agent, RunConfig, RunContextWrapper, Runner, Tool, function_tool
from prometheus_client import REGISTRY

from app.agent.agent import TurnHooks
from app.agent.context import note_tool_failure
from app.agent.fake_model import FakeModel, FakeTurn
from app.observability.agent_metrics import noting_default_failures


def count(tool: str, outcome: str) -> float:
    labels = {"tool": tool, "outcome": outcome}
    return REGISTRY.get_sample_value("chatkit_tool_calls_total", labels) or 0.0


def own_failure(ctx: RunContextWrapper[Any], error: Exception) -> str:
    note_tool_failure(ctx)
    return f"It did not work: {type(error).__name__}."


@function_tool
async def works() -> str:
    """Always works."""
    return "done"


@function_tool  # the SDK's default failure function: seen through the error formatter
async def breaks_by_default() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@function_tool(failure_error_function=own_failure)
async def breaks_its_own_way() -> str:
    """Always fails, and says so itself."""
    raise RuntimeError("boom")


async def test_each_tool_call_is_counted_by_outcome_without_sdk_tracing():
    model = FakeModel(tokens=2, delay=0)
    tools: list[Tool] = [works, breaks_by_default, breaks_its_own_way]
    agent = Agent(name="counted", model=model, tools=tools)
    run_config = RunConfig(tracing_disabled=True, tool_error_formatter=noting_default_failures)
    names = ["works", "breaks_by_default", "breaks_its_own_way"]
    before = {
        (name, outcome): count(name, outcome) for name in names for outcome in ("ok", "error")
    }
    for name in names:
        model.script.push(FakeTurn.call(name), FakeTurn.say("Done."))
        result = Runner.run_streamed(
            agent, "go", run_config=run_config, hooks=TurnHooks(metered=True)
        )
        async for _ in result.stream_events():
            pass
    after = {key: count(*key) for key in before}
    deltas = {key: after[key] - before[key] for key in before}
    assert deltas == {
        ("works", "ok"): 1,
        ("works", "error"): 0,
        ("breaks_by_default", "ok"): 0,
        ("breaks_by_default", "error"): 1,
        ("breaks_its_own_way", "ok"): 0,
        ("breaks_its_own_way", "error"): 1,
    }
    # Unmetered hooks count nothing.
    model.script.push(FakeTurn.call("works"), FakeTurn.say("Done."))
    result = Runner.run_streamed(agent, "go", run_config=run_config, hooks=TurnHooks(metered=False))
    async for _ in result.stream_events():
        pass
    assert count("works", "ok") == after[("works", "ok")]
