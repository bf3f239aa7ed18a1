"""The agent's configuration: AGENT_CONFIG's TOML, the MCP servers' JSON, precedence, secrets.

Every error names its file and key, and is raised at startup."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from openai.types.shared import Reasoning

from app.agent.config import ENV_OVERRIDES, AgentConfig, load_agent_config, secret_like
from app.agent.tools import TOOL_GROUPS, TOOLS
from app.config import ConfigurationError, Settings
from app.main import create_app
from app.store.db import PROJECT_ROOT
from tests.conftest import make_settings


def settings_for(path: Path | None = None, **values: Any) -> Settings:
    return Settings(_env_file=None, agent_config=path, **values)


def load(tmp_path: Path, toml: str, environ: dict[str, str] | None = None, **values: Any):
    path = tmp_path / "agent.toml"
    path.write_text(toml)
    return load_agent_config(settings_for(path, **values), environ or {})


def refused(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as error:
        load(tmp_path, toml, environ)
    return str(error.value).replace(str(tmp_path) + "/", "")


def test_each_key_the_environment_fills_names_a_setting() -> None:
    assert set(ENV_OVERRIDES.values()) <= set(Settings.model_fields)


def test_without_a_file_today_s_behaviour_is_the_default() -> None:
    config = load_agent_config(settings_for(), {})
    defaults = Settings(_env_file=None)
    assert (config.name, config.model, config.instructions, config.history_window) == (
        "Assistant",
        defaults.chatkit_model,
        defaults.chatkit_instructions,
        defaults.history_window,
    )
    assert config.tools.tasks and config.tools.who_am_i and config.tools.client
    assert config.titles.enabled and config.titles.model is None
    assert config.mcp_servers == {} and config.tier_models == {}


def test_each_built_in_tool_has_one_switch_at_most() -> None:
    """A tool added to TOOLS without a switch is simply on (docs/agent.md, "Adding a tool")."""
    grouped = [tool.name for members in TOOL_GROUPS.values() for tool in members]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) <= {tool.name for tool in TOOLS}


def test_a_file_sets_every_common_key(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "assistant.md").write_text("Be brief.\n")
    config = load(
        tmp_path,
        """
name = "Support"
instructions_file = "prompts/assistant.md"
history_window = 12
[model]
name = "gpt-4.1"
temperature = 0.2
reasoning_effort = "low"
max_output_tokens = 500
[model.tiers]
pro = "gpt-5"
[tools]
tasks = false
client = false
[titles]
model = "gpt-4.1-nano"
""",
    )
    assert (config.name, config.instructions, config.history_window) == ("Support", "Be brief.", 12)
    assert config.model == "gpt-4.1" and config.tier_models == {"pro": "gpt-5"}
    assert config.model_settings.temperature == 0.2
    assert config.model_settings.reasoning == Reasoning(effort="low")
    assert config.model_settings.max_tokens == 500
    assert (config.tools.tasks, config.tools.who_am_i, config.tools.client) == (False, True, False)
    assert config.titles.model == "gpt-4.1-nano"


def test_the_environment_fills_what_the_file_leaves_out(tmp_path: Path, caplog) -> None:
    config = load(
        tmp_path,
        'instructions = "From the file."',
        chatkit_model="from-env",
        history_window=7,
        chatkit_instructions="Env.",
    )
    assert (config.model, config.history_window) == ("from-env", 7)
    # A key the file sets wins, and the ignored variable is named in the log.
    assert config.instructions == "From the file."
    assert "agent.toml sets instructions: CHATKIT_INSTRUCTIONS is ignored" in caplog.text


def test_model_may_be_just_a_name(tmp_path: Path) -> None:
    assert load(tmp_path, 'model = "gpt-4.1"').model == "gpt-4.1"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[model]\ntemperature = 3", "model.temperature: Input should be less than or equal to 2"),
        ('[model]\nreasoning_effort = "huge"', "model.reasoning_effort: Input should be 'none'"),
        ("[model]\nmax_output_tokens = 0", "model.max_output_tokens: Input should be greater"),
        ("[model.tiers]\npro = 4", "model.tiers.pro: Input should be a valid string"),
        ("history_window = 0", "history_window: Input should be greater than or equal to 1"),
        ('nmae = "x"', "nmae: Extra inputs are not permitted"),
        ('name = ""', "name: String should have at least 1 character"),
        ('instructions = "a"\ninstructions_file = "b"', "set instructions or instructions_file"),
        ('[tools]\ntasks = "maybe"', "tools.tasks: Input should be a valid boolean"),
        ("[tools]\nweather = true", "tools.weather: Extra inputs are not permitted"),
        ('[titles]\nmodel = ""', "titles.model: String should have at least 1 character"),
        ("[mcp]\nconnect_timeout_seconds = 0", "mcp.connect_timeout_seconds: Input should be"),
        ('[mcp_servers.x]\nargs = ["a"]', "mcp_servers.x: needs command (a local server) or url"),
        ('[mcp_servers.x]\ncommand = "a"\nurl = "http://h"', "mcp_servers.x: set command"),
        ('[mcp_servers.x]\nurl = "ftp://h"', "mcp_servers.x.url: must be an http(s) URL"),
        (
            '[mcp_servers.x]\ncommand = "a"\nheaders = { Accept = "b" }',
            "mcp_servers.x: headers and forward_user_id are for HTTP servers",
        ),
        (
            '[mcp_servers.x]\nurl = "http://h"\nenv = { A = "b" }',
            "mcp_servers.x: args, env and cwd are for local servers",
        ),
        ('[mcp_servers.x]\ncommand = "a"\ntype = "sse"', "mcp_servers.x: type 'sse' needs a url"),
        (
            '[mcp_servers.x]\nurl = "http://h"\ntype = "stdio"',
            "mcp_servers.x: type 'stdio' needs a",
        ),
        (
            '[mcp_servers.x]\nurl = "http://h"\ntype = "websocket"',
            "mcp_servers.x.type: Input should be 'stdio', 'http' or 'sse'",
        ),
        ('[mcp_servers.x]\ncommand = "a"\ntimeout_seconds = 0', "mcp_servers.x.timeout_seconds"),
        (
            '[mcp_servers.x]\nurl = "http://h"\nforward_user_id = "X User"',
            "mcp_servers.x.forward_user_id: must be true, false or a header name",
        ),
        (
            '[mcp_servers.x]\ncommand = "a"\nrequire_approval = "sometimes"',
            'mcp_servers.x.require_approval: must be true, false, "always", "never" or a list',
        ),
        (
            '[mcp_servers.x]\ncommand = "a"\nallowed_tools = "add"',
            "mcp_servers.x.allowed_tools: Input",
        ),
        (
            '[mcp_servers.x]\ncommand = "a"\ncache_tool_list = true',
            "mcp_servers.x.cache_tool_list: Extra",
        ),
        ('[mcp_servers."a/b"]\ncommand = "a"', "mcp_servers.a/b: the name may hold letters"),
        ("[model\nname = 1", "Expected ']' at the end of a table declaration"),
        ('instructions_file = "nowhere.md"', "instructions_file: nowhere.md does not exist"),
    ],
)
def test_every_error_names_its_key(tmp_path: Path, toml: str, message: str) -> None:
    assert f"agent.toml: {message}" in refused(tmp_path, toml)


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = refused(tmp_path, "history_window = 0\n[model]\ntemperature = -1")
    assert "agent.toml: history_window:" in text and "agent.toml: model.temperature:" in text


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="AGENT_CONFIG: .*nope.toml does not exist"):
        load_agent_config(settings_for(tmp_path / "nope.toml"), {})


def test_startup_refuses_a_bad_file(tmp_path: Path, postgres_url) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[model]\ntemperature = 9")
    with pytest.raises(ConfigurationError, match="model.temperature"):
        create_app(make_settings(postgres_url, agent_config=path))


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ('command = "a"\nenv = { GITHUB_TOKEN = "ghp_123" }', "env.GITHUB_TOKEN"),
        ('command = "a"\nenv = { apiKey = "abc" }', "env.apiKey"),
        ('url = "http://h"\nheaders = { Authorization = "Bearer abc" }', "headers.Authorization"),
        ('url = "http://h"\nheaders = { X-Api-Key = "abc" }', "headers.X-Api-Key"),
        ('command = "a"\nargs = ["--api-key=abc"]', "args[0]"),
        ('command = "a"\nargs = ["serve", "--token", "abc"]', "args[2]"),
        ('url = "http://h/mcp?api_key=abc"', "url: query parameter api_key"),
        ('url = "http://me:pw@h/mcp"', "url: holds a password"),
    ],
)
def test_a_literal_secret_is_refused(tmp_path: Path, server: str, key: str) -> None:
    text = refused(tmp_path, f"[mcp_servers.x]\n{server}")
    assert f"agent.toml: mcp_servers.x.{key}" in text
    assert "${NAME}" in text or "password" in text


def test_secrets_come_from_references(tmp_path: Path) -> None:
    environ = {"GITHUB_TOKEN": "ghp_real", "KEY": "k", "HOST": "h.example.com"}
    config = load(
        tmp_path,
        """
[mcp_servers.gh]
url = "https://${HOST}/mcp?api_key=${KEY}"
headers = { Authorization = "Bearer ${GITHUB_TOKEN}", Accept = "application/json" }
[mcp_servers.local]
command = "run"
args = ["--token", "${env:GITHUB_TOKEN}", "--token-file", "/etc/token", "--verbose"]
env = { GITHUB_TOKEN = "${GITHUB_TOKEN}", KEY_FILE = "/etc/key", LOG_LEVEL = "debug" }
""",
        environ,
    )
    gh, local = config.mcp_servers["gh"], config.mcp_servers["local"]
    assert gh.url == "https://h.example.com/mcp?api_key=k"
    assert gh.headers["Authorization"] == "Bearer ghp_real"
    assert local.args[1] == "ghp_real" and local.env["GITHUB_TOKEN"] == "ghp_real"
    # The summary that is logged holds the references, never their values.
    logged = json.dumps(config.summary)
    assert "${GITHUB_TOKEN}" in logged and "ghp_real" not in logged


def test_a_reference_to_an_unset_variable_is_refused(tmp_path: Path) -> None:
    toml = '[mcp_servers.gh]\nurl = "http://h"\nheaders = { Authorization = "Bearer ${NOPE}" }'
    text = refused(tmp_path, toml, {"NOPE": ""})
    assert "agent.toml: mcp_servers.gh.headers.Authorization: ${NOPE} is not set" in text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("GITHUB_PERSONAL_ACCESS_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("apiKey", True),
        ("Authorization", True),
        ("Cookie", True),
        ("DB_PASSWORD", True),
        ("--client-secret", True),
        ("KEY_FILE", False),
        ("AWS_ACCESS_KEY_ID", False),
        ("X-User-Id", False),
        ("LOG_LEVEL", False),
        ("MONKEY", False),
        ("--token-file", False),
    ],
)
def test_which_names_look_secret(name: str, secret: bool) -> None:
    assert secret_like(name) is secret


CLAUDE_DESKTOP = {
    "mcpServers": {
        "github": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}"},
        },
        "docs": {"url": "https://docs.example.com/mcp", "headers": {"X-Team": "web"}},
        "legacy": {"type": "sse", "url": "https://old.example.com/sse"},
        "off": {"command": "x", "disabled": True, "autoApprove": ["a"]},
    }
}


def test_a_claude_desktop_or_cursor_file_is_read_unchanged(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    (tmp_path / "mcp.json").write_text(json.dumps(CLAUDE_DESKTOP))
    config = load(tmp_path, 'mcp_servers_file = "mcp.json"', {"GITHUB_TOKEN": "t"})
    servers = config.mcp_servers
    assert sorted(servers) == ["docs", "github", "legacy"]  # `disabled` is honoured
    assert servers["github"].transport == "stdio"
    assert servers["github"].env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "t"}
    assert (servers["docs"].transport, servers["legacy"].transport) == ("http", "sse")
    assert "ignoring keys of another client: autoApprove" in caplog.text


def test_mcp_config_alone_needs_no_toml(tmp_path: Path) -> None:
    """VS Code's `servers` key and `type: "http"`, from MCP_CONFIG."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"servers": {"api": {"type": "http", "url": "http://h/mcp"}}}))
    config = load_agent_config(settings_for(mcp_config=path), {})
    assert config.mcp_servers["api"].url == "http://h/mcp"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"servers": []}', 'mcp.json: expected {"mcpServers": {"name": {...}}}'),
        ("{oops", "mcp.json: Expecting property name"),
        ('{"mcpServers": {"x": {"url": "ws://h"}}}', "mcp.json: mcpServers.x: url: must be"),
        (
            '{"mcpServers": {"x": {"command": "a", "env": {"API_KEY": "k"}}}}',
            "mcp.json: mcpServers.x.env.API_KEY: looks like a secret",
        ),
        ('{"mcpServers": {"tasks": {"command": "a"}}}', "also defined in agent.toml"),
    ],
)
def test_json_errors_name_their_key(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "mcp.json").write_text(content)
    toml = 'mcp_servers_file = "mcp.json"\n[mcp_servers.tasks]\ncommand = "b"'
    assert message in refused(tmp_path, toml)


def test_the_example_file_loads() -> None:
    config: AgentConfig = load_agent_config(
        settings_for(PROJECT_ROOT / "agent.example.toml"), {"GITHUB_TOKEN": "ghp_example"}
    )
    assert set(config.mcp_servers) == {"fetch", "github"}
    assert config.mcp_servers["github"].approval == frozenset({"create_issue"})
    assert config.tier_models == {"pro": "gpt-4.1"}
    assert "ghp_example" not in json.dumps(config.summary)
