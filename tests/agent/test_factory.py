"""Building the agent from the configuration (models per tier, settings, tool switches, titles)
and from AGENT_FACTORY (its contract and its errors)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, ModelSettings, function_tool
from agents.models.openai_responses import OpenAIResponsesModel

from app.agent.agent import Assistant
from app.agent.config import load_agent_config
from app.agent.factory import AgentSetup, agent_from_factory
from app.agent.fake_model import FakeModel
from app.agent.model import build_model, build_model_client
from app.agent.tools import TOOLS
from app.config import ConfigurationError, Settings, load_settings
from app.context import RequestContext
from tests.conftest import make_settings
from tests.helpers.agent import stored_thread
from tests.helpers.apps import running_app
from tests.helpers.chatkit import create_thread_req, created_thread_id, stream


def setup_for(tmp_path: Path, toml: str = "", **values: Any) -> AgentSetup:
    path = tmp_path / "agent.toml"
    path.write_text(toml)
    settings = Settings(_env_file=None, agent_config=path, **values)
    config = load_agent_config(settings, {})
    client = build_model_client(settings)
    return AgentSetup(settings, config, client, build_model(settings, client, config.model))


def caller(tier: str) -> RequestContext:
    return RequestContext(user_id="u", auth_method="development", tier=tier)


def model_name(agent: Agent[Any]) -> str:
    assert isinstance(agent.model, OpenAIResponsesModel)
    return agent.model.model


def test_each_tier_gets_its_model_and_the_file_s_settings(tmp_path: Path) -> None:
    toml = """
[model]
name = "gpt-4.1-mini"
temperature = 0.1
max_output_tokens = 300
[model.tiers]
pro = "gpt-4.1"
[titles]
model = "gpt-4.1-nano"
"""
    setup = setup_for(tmp_path, toml, openai_api_key="sk-test")
    assistant = Assistant(setup)

    assert model_name(assistant.agent_for(caller("pro"))) == "gpt-4.1"
    assert model_name(assistant.agent_for(caller("free"))) == "gpt-4.1-mini"
    settings = assistant.agent.model_settings
    assert (settings.temperature, settings.max_tokens) == (0.1, 300)
    assert isinstance(assistant.title_model, OpenAIResponsesModel)
    assert assistant.title_model.model == "gpt-4.1-nano"


def test_tool_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    @function_tool
    def plan_limits() -> str:
        """A tool added to TOOLS (docs/agent.md, "Adding a tool"), in no switch's group."""
        return "{}"

    monkeypatch.setattr("app.agent.factory.TOOLS", (*TOOLS, plan_limits))
    setup = setup_for(tmp_path, "[tools]\ntasks = false\nclient = false", model_provider="fake")
    agent = setup.default_agent()
    assert [tool.name for tool in agent.tools] == ["get_current_user", "plan_limits"]
    assert agent.tool_use_behavior == "run_llm_again"  # no client tool to stop at


async def test_titles_can_be_turned_off(tmp_path: Path, postgres_url, user) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("history_window = 4\n[titles]\nenabled = false")
    async with running_app(make_settings(postgres_url, agent_config=path)) as running:
        assert running.services.assistant.history_window == 4
        events = await stream(running.client, user.user_id, create_thread_req("Hello there"))
        thread = await stored_thread(running.services, user.user_id, created_thread_id(events))
    assert thread.title is None


def install_module(monkeypatch: pytest.MonkeyPatch, **functions: Any) -> str:
    module = types.ModuleType("user_agent")
    for name, function in functions.items():
        setattr(module, name, function)
    monkeypatch.setitem(sys.modules, "user_agent", module)
    return "user_agent"


async def test_a_factory_s_agent_gets_the_configured_provider(tmp_path, monkeypatch) -> None:
    """A model name (or none) goes through MODEL_PROVIDER; the factory may be async."""
    seen: list[AgentSetup] = []

    async def build(setup: AgentSetup) -> Agent[Any]:
        seen.append(setup)
        return Agent(name="Mine", instructions="Be mine.", model="gpt-4.1")

    install_module(monkeypatch, build=build)
    setup = setup_for(tmp_path, openai_api_key="sk-test", agent_factory="user_agent:build")
    agent = await agent_from_factory("user_agent:build", setup)
    assert seen == [setup] and agent.name == "Mine"
    assert model_name(agent) == "gpt-4.1"

    fake_setup = setup_for(tmp_path, model_provider="fake")
    agent = await agent_from_factory("user_agent:build", fake_setup)
    assert isinstance(agent.model, FakeModel)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:build", "AGENT_FACTORY: cannot import no_such_module_here"),
        ("user_agent:missing", "AGENT_FACTORY: user_agent has no function missing"),
        ("user_agent:not_an_agent", "user_agent:not_an_agent returned str, not an agents.Agent"),
    ],
)
async def test_factory_errors_name_the_setting(tmp_path, monkeypatch, spec, message) -> None:
    install_module(monkeypatch, not_an_agent=lambda setup: "agent")
    with pytest.raises(ConfigurationError, match=message):
        await agent_from_factory(spec, setup_for(tmp_path, model_provider="fake"))


async def test_startup_refuses_a_broken_factory(postgres_url) -> None:
    with pytest.raises(ConfigurationError, match="cannot import"):
        async with running_app(make_settings(postgres_url, agent_factory="nowhere:build")):
            pass


def test_the_factory_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("AGENT_FACTORY", "my_agent.build")
    with pytest.raises(ConfigurationError, match="AGENT_FACTORY: .*package.module:function"):
        load_settings()


def test_model_settings_of_the_provider_are_kept(tmp_path: Path) -> None:
    """Chat Completions asks for usage; the file's settings go on top."""
    setup = setup_for(
        tmp_path, "[model]\ntemperature = 0.5", openai_api_key="k", model_api="chat_completions"
    )
    settings: ModelSettings = setup.default_agent().model_settings
    assert (settings.include_usage, settings.temperature) == (True, 0.5)
