"""The agent by configuration: `AGENT_CONFIG=agent.toml`, MCP servers, and what wins over what.

Precedence, highest first (docs/agent.md, "Configuration"):

1. `AGENT_FACTORY` (code, `app/agent/factory.py`) builds the agent itself;
2. `AGENT_CONFIG`: a key the TOML file sets wins;
3. a key the file leaves out takes its environment variable (`ENV_OVERRIDES`);
4. else today's default.

MCP servers come from `[mcp_servers.NAME]` tables and from a JSON file in the `mcpServers` shape
of Claude Desktop, Cursor and VS Code (`mcp_servers_file`, or `MCP_CONFIG`). A secret enters
either file only as a `${NAME}` reference to an environment variable (`check_secrets`).

Every problem is reported at startup, with the file and the key:
`agent.toml: model.temperature: Input should be less than or equal to 2`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from agents import ModelSettings
from dotenv import dotenv_values
from openai.types.shared import Reasoning
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.config import ConfigurationError, Settings

logger = logging.getLogger(__name__)

Transport = Literal["stdio", "http", "sse"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]

ENV_OVERRIDES: dict[str, str] = {
    "model.name": "chatkit_model",
    "instructions": "chatkit_instructions",
    "history_window": "history_window",
    "mcp_servers_file": "mcp_config",
}
"""Keys the environment fills when the file leaves them out: key → `Settings` field (the
settings' Agent group, in `app/config.py`)."""

REFERENCE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}`, or `${env:NAME}` as Cursor and VS Code write it."""
SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "pwd", "key", "apikey", "auth", "authorization"}
    | {"credential", "credentials", "cookie", "bearer"}
)
NOT_SECRET_ENDINGS = frozenset({"file", "path", "dir", "url", "id", "name", "type", "header"})
SERVER_NAME = re.compile(r"^[\w .-]{1,64}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
    "sse": "sse",
}


class Strict(BaseModel):
    """A table of `agent.toml`: unknown keys are refused, so a typo is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Strict):
    """`[model]`: the model for replies and its settings."""

    name: str | None = Field(default=None, min_length=1)
    """The model (an Azure deployment); else `CHATKIT_MODEL`."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    reasoning_effort: ReasoningEffort | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    tiers: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    """A model per user tier (`pro = "gpt-4.1"`); other tiers get `name`."""

    def settings(self) -> ModelSettings:
        reasoning = Reasoning(effort=self.reasoning_effort) if self.reasoning_effort else None
        return ModelSettings(
            temperature=self.temperature, reasoning=reasoning, max_tokens=self.max_output_tokens
        )


class ToolsConfig(Strict):
    """`[tools]`: which built-in tools the agent has."""

    tasks: bool = True
    """add_task, list_tasks, complete_task, update_task, delete_task."""
    who_am_i: bool = True
    """get_current_user."""
    client: bool = True
    """switch_theme, run by the browser."""


class TitlesConfig(Strict):
    """`[titles]`: thread titles after the first exchange."""

    enabled: bool = True
    writer: Literal["model", "words"] | None = None
    """`model`: a model writes them (one more model request per new thread); `words`: the
    first words of the message, at no cost. Unset: `model` if `model` names one, else `words`."""
    model: str | None = Field(default=None, min_length=1)
    """The model that writes them; else the reply model."""

    @property
    def by_model(self) -> bool:
        return self.writer == "model" or (self.writer is None and self.model is not None)


class McpConfig(Strict):
    """`[mcp]`: how the app keeps its MCP servers connected."""

    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """The longest one connection attempt takes; startup waits at most this long for all."""
    health_check_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often a connected server is checked (and at once after a failed call)."""
    retry_initial_seconds: float = Field(default=1.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    """A server that is down is retried after `retry_initial_seconds`, doubling up to this."""
    prefix_tool_names: bool = False
    """Name MCP tools `mcp_<server>__<tool>`, for servers whose tool names collide."""


class McpServerConfig(Strict):
    """One MCP server: the keys MCP clients use, plus this server's own.

    A local server runs as a subprocess (`command`, `args`, `env`, `cwd`) and speaks stdio; a
    remote one is reached at `url` with `headers`, over streamable HTTP (or `type = "sse"`).
    """

    type: Transport | None = None
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    allowed_tools: list[str] | None = None
    """Only these tools are shown to the model."""
    blocked_tools: list[str] = Field(default_factory=list)
    """These tools are never shown to the model."""
    cache_tools_list: bool = True
    """List the tools once per connection (refreshed on reconnect) rather than every turn."""
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """The longest a call (or the tool list) may take before it fails."""
    require_approval: bool | list[str] = False
    """`true`/`"always"`: every tool waits for the user's approval; a list: those tools."""
    forward_user_id: bool | str = False
    """HTTP servers: send the caller's user id with each call, in `X-User-Id` (`true`) or in
    the header this names."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _transport_alias(cls, data: Any) -> Any:
        """`transport` is accepted for `type`, and transports in any spelling clients use."""
        if isinstance(data, dict):
            data = dict(data)
            if "transport" in data and "type" not in data:
                data["type"] = data.pop("transport")
            if isinstance(kind := data.get("type"), str):
                data["type"] = TRANSPORTS.get(kind.strip().lower(), kind)
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "${")):
            raise ValueError("must be an http(s) URL, e.g. https://mcp.example.com/mcp")
        return value

    @field_validator("forward_user_id", mode="plain")
    @classmethod
    def _header_name(cls, value: object) -> bool | str:
        if isinstance(value, bool) or (isinstance(value, str) and HEADER_NAME.fullmatch(value)):
            return value
        raise ValueError("must be true, false or a header name such as X-User-Id")

    @field_validator("require_approval", mode="plain")
    @classmethod
    def _approval(cls, value: object) -> bool | list[str]:
        if isinstance(value, bool):
            return value
        if value in ("always", "never"):
            return value == "always"
        if isinstance(value, list) and all(isinstance(name, str) and name for name in value):
            return value
        raise ValueError('must be true, false, "always", "never" or a list of tool names')

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if self.command and self.url:
            raise ValueError("set command (a local server) or url (a remote one), not both")
        if not (self.command or self.url):
            raise ValueError("needs command (a local server) or url (a remote one)")
        if self.command:
            if self.type not in (None, "stdio"):
                raise ValueError(f"type {self.type!r} needs a url, not a command")
            if self.headers or self.forward_user_id:
                raise ValueError("headers and forward_user_id are for HTTP servers (url)")
        elif self.type == "stdio":
            raise ValueError("type 'stdio' needs a command, not a url")
        elif self.args or self.env or self.cwd:
            raise ValueError("args, env and cwd are for local servers (command)")
        return self

    @property
    def transport(self) -> Transport:
        return self.type or ("stdio" if self.command else "http")

    @property
    def user_id_header(self) -> str | None:
        """The header that carries the caller's id, when it is forwarded."""
        if self.forward_user_id is True:
            return "X-User-Id"
        return self.forward_user_id or None

    @property
    def approval(self) -> bool | frozenset[str]:
        """Which tools need approval: all (`True`), none (`False`), or those named.

        Carried for the approvals of issue 14's part 3, and given to the Agents SDK as the
        server's `require_approval`.
        """
        if isinstance(self.require_approval, list):
            return frozenset(self.require_approval)
        return self.require_approval


class JsonMcpServer(McpServerConfig):
    """A server pasted from another client's file: keys of that client's own are ignored."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    disabled: bool = False
    """Cline's and Roo's switch: the server is left out."""


class AgentFile(Strict):
    """`agent.toml`, as written: keys left out are filled by the environment, then defaults."""

    name: str = Field(default="Assistant", min_length=1, max_length=100)
    instructions: str | None = Field(default=None, min_length=1)
    instructions_file: str | None = Field(default=None, min_length=1)
    """A file holding the instructions, relative to this file."""
    history_window: int | None = Field(default=None, ge=1, le=500)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    titles: TitlesConfig = Field(default_factory=TitlesConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict)
    mcp_servers_file: str | None = Field(default=None, min_length=1)
    """A JSON file of `mcpServers`, relative to this file."""

    @field_validator("model", mode="before")
    @classmethod
    def _model_name(cls, value: object) -> object:
        """`model = "gpt-4.1"` is short for `[model] name = "gpt-4.1"`."""
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_instructions(self) -> AgentFile:
        if self.instructions and self.instructions_file:
            raise ValueError("set instructions or instructions_file, not both")
        return self


@dataclass(frozen=True)
class AgentConfig:
    """The agent's configuration once resolved: every value set, every `${NAME}` expanded."""

    name: str
    instructions: str
    model: str
    model_settings: ModelSettings
    tier_models: dict[str, str]
    history_window: int
    tools: ToolsConfig
    titles: TitlesConfig
    mcp: McpConfig
    mcp_servers: dict[str, McpServerConfig]
    summary: dict[str, Any] = field(default_factory=dict, compare=False)
    """What was configured, as written (references unexpanded): safe to log."""


def load_agent_config(settings: Settings, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read `AGENT_CONFIG` (and the MCP servers' JSON file), or fail naming every bad key.

    `environ` resolves `${NAME}` references: by default the process environment over `.env`.
    """
    environ = reference_values() if environ is None else environ
    problems: list[str] = []
    path = settings.agent_config
    file = AgentFile()
    if path is not None:
        file = _read_agent_file(path, problems) or file
    base = path.parent if path is not None else Path()
    explicit = settings.model_fields_set

    def pick(key: str, from_file: Any) -> Any:
        env_field = ENV_OVERRIDES[key]
        if from_file is not None:
            if env_field in explicit:
                logger.warning("%s sets %s: %s is ignored", path, key, env_field.upper())
            return from_file
        return getattr(settings, env_field)

    instructions = pick("instructions", file.instructions)
    if file.instructions_file is not None:
        instructions = _read_text(base / file.instructions_file, f"{path}: instructions_file")
        instructions = instructions or _problem(problems, f"{path}: instructions_file: is empty")
    servers: dict[str, McpServerConfig] = {}
    where: dict[str, str] = {}
    for name, server in file.mcp_servers.items():
        servers[name], where[name] = server, f"{path}: mcp_servers.{name}"
    servers_file: Path | None = pick("mcp_servers_file", file.mcp_servers_file)
    if file.mcp_servers_file is not None:
        servers_file = base / file.mcp_servers_file
    if servers_file is not None:
        for name, server in _read_servers_json(servers_file, problems).items():
            if name in servers:
                problems.append(f"{servers_file}: mcpServers.{name}: also defined in {where[name]}")
            else:
                servers[name], where[name] = server, f"{servers_file}: mcpServers.{name}"
    expanded: dict[str, McpServerConfig] = {}
    for name, server in servers.items():
        if not SERVER_NAME.fullmatch(name):
            problems.append(f"{where[name]}: the name may hold letters, digits, ' ', '.', '_', '-'")
        problems.extend(f"{where[name]}.{problem}" for problem in check_secrets(server))
        expanded[name] = _expand(server, environ, where[name], problems)
    if problems:
        raise ConfigurationError("Invalid agent configuration:\n  " + "\n  ".join(problems))
    config = AgentConfig(
        name=file.name,
        instructions=instructions,
        model=pick("model.name", file.model.name),
        model_settings=file.model.settings(),
        tier_models=dict(file.model.tiers),
        history_window=pick("history_window", file.history_window),
        tools=file.tools,
        titles=file.titles,
        mcp=file.mcp,
        mcp_servers=expanded,
    )
    return replace(config, summary=_summary(config, servers, source=path))


def reference_values() -> dict[str, str]:
    """What `${NAME}` may name: the environment, over `.env` (as for the settings)."""
    dotenv = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    return {**dotenv, **os.environ}


def check_secrets(server: McpServerConfig) -> Iterator[str]:
    """Literal secrets in a server's definition, as `key: problem` lines.

    The rule: a value whose name looks like a secret (a word such as token, secret, password,
    key, auth, credential or cookie; names ending in _FILE, _PATH, _DIR, _URL, _ID... are not)
    must hold a `${NAME}` reference, e.g. `Authorization = "Bearer ${GITHUB_TOKEN}"`. That holds
    for `env`, `headers`, `--flag=value` and `--flag value` in `args`, and the URL's query; a
    URL may not carry a password either.
    """
    for key, value in server.env.items():
        if secret_like(key) and not REFERENCE.search(value):
            yield _literal(f"env.{key}", f'"${{{key}}}"')
    for key, value in server.headers.items():
        if secret_like(key) and not REFERENCE.search(value):
            hint = '"Bearer ${API_TOKEN}"' if key.lower() == "authorization" else '"${API_KEY}"'
            yield _literal(f"headers.{key}", hint)
    for index, arg in enumerate(server.args):
        flag, equals, value = arg.partition("=")
        if not flag.startswith("-") or not secret_like(flag):
            continue
        following = server.args[index + 1] if index + 1 < len(server.args) else None
        if not equals and (following is None or following.startswith("-")):
            continue  # a switch, not an option with a value
        literal = value if equals else following
        if literal is not None and not REFERENCE.search(literal):
            yield _literal(f"args[{index + (0 if equals else 1)}]", '"${API_KEY}"')
    if server.url:
        parts = urlsplit(server.url)
        if parts.password and not REFERENCE.search(parts.password):
            yield "url: holds a password: pass credentials in headers, from ${NAME} references"
        for key, value in parse_qsl(parts.query):
            if secret_like(key) and not REFERENCE.search(value):
                yield _literal(f"url: query parameter {key}", '"${API_KEY}"')


def secret_like(name: str) -> bool:
    """Whether a variable, header or flag name names a secret (see `check_secrets`)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return bool(words) and words[-1] not in NOT_SECRET_ENDINGS and bool(SECRET_WORDS & set(words))


def _literal(key: str, example: str) -> str:
    return (
        f"{key}: looks like a secret, so it must come from the environment: write a ${{NAME}} "
        f"reference such as {example} and set that variable"
    )


def _expand(
    server: McpServerConfig, environ: Mapping[str, str], where: str, problems: list[str]
) -> McpServerConfig:
    """The server with every `${NAME}` replaced; a variable that is not set is a problem."""

    def expand(key: str, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match[1]
            if not environ.get(name):
                problems.append(f"{where}.{key}: ${{{name}}} is not set in the environment")
                return ""
            return environ[name]

        return REFERENCE.sub(replace, value)

    return server.model_copy(
        update={
            "command": server.command and expand("command", server.command),
            "args": [expand(f"args[{i}]", arg) for i, arg in enumerate(server.args)],
            "env": {k: expand(f"env.{k}", v) for k, v in server.env.items()},
            "cwd": server.cwd and expand("cwd", server.cwd),
            "url": server.url and expand("url", server.url),
            "headers": {k: expand(f"headers.{k}", v) for k, v in server.headers.items()},
        }
    )


def _read_agent_file(path: Path, problems: list[str]) -> AgentFile | None:
    text = _read_text(path, "AGENT_CONFIG")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"Invalid agent configuration:\n  {path}: {exc}") from None
    try:
        return AgentFile.model_validate(data)
    except ValidationError as exc:
        problems.extend(_validation_problems(str(path), exc))
        return None


def _read_servers_json(path: Path, problems: list[str]) -> dict[str, McpServerConfig]:
    """The `mcpServers` of a Claude Desktop, Cursor or VS Code (`servers`) file."""
    try:
        data = json.loads(_read_text(path, "MCP_CONFIG"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"Invalid agent configuration:\n  {path}: {exc}") from None
    key = "servers" if isinstance(data, dict) and "servers" in data else "mcpServers"
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        problems.append(f'{path}: expected {{"mcpServers": {{"name": {{...}}}}}}')
        return {}
    servers: dict[str, McpServerConfig] = {}
    for name, entry in entries.items():
        try:
            server = JsonMcpServer.model_validate(entry)
        except ValidationError as exc:
            problems.extend(_validation_problems(f"{path}: {key}.{name}", exc))
            continue
        if server.model_extra:
            logger.info(
                "%s: %s.%s: ignoring keys of another client: %s",
                path,
                key,
                name,
                ", ".join(sorted(server.model_extra)),
            )
        if not server.disabled:
            fields = server.model_dump(exclude_unset=True, exclude={"disabled"}, by_alias=True)
            fields = {k: v for k, v in fields.items() if k in McpServerConfig.model_fields}
            servers[name] = McpServerConfig.model_validate(fields)
    return servers


def _read_text(path: Path, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"{setting}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{setting}: cannot read {path}: {exc}") from None


def _validation_problems(where: str, exc: ValidationError) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        yield f"{where}: {key}: {message}" if key else f"{where}: {message}"


def _problem(problems: list[str], text: str) -> str:
    problems.append(text)
    return ""


def _summary(
    config: AgentConfig, servers: Mapping[str, McpServerConfig], source: Path | None
) -> dict[str, Any]:
    """The configuration as written, for the startup log: references stay unexpanded."""
    settings = config.model_settings.to_json_dict()
    return {
        "source": str(source) if source else None,
        "name": config.name,
        "instructions": f"{len(config.instructions)} characters",
        "model": config.model,
        "model_settings": {k: v for k, v in settings.items() if v is not None},
        "tier_models": config.tier_models,
        "history_window": config.history_window,
        "tools": config.tools.model_dump(),
        "titles": {
            **config.titles.model_dump(),
            "writer": "model" if config.titles.by_model else "words",
        },
        "mcp": config.mcp.model_dump(),
        "mcp_servers": {
            name: server.model_dump(exclude_defaults=True, by_alias=True)
            for name, server in servers.items()
        },
    }
