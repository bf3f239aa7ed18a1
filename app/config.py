"""Settings: every environment variable the service reads, validated once at startup.

Field names are the environment variable names (case-insensitive); `.env` is read when present.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chatkit.db"
DEV_CORS_ORIGINS = ["http://localhost:3000", "http://localhost:5173"]

MIN_JWT_SECRET_BYTES = 32
MIN_METRICS_TOKEN_CHARS = 16
DEFAULT_DAILY_MESSAGES: dict[str, int | None] = {"free": 200, "pro": 5000}

# libpq spellings in platform URLs: asyncpg names some differently and rejects the rest.
LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}
LIBPQ_ONLY = {"channel_binding", "gssencmode", "sslcompression"}

BASE_URL_EXAMPLES = {
    "public_base_url": "https://chat-api.example.com",
    "azure_openai_endpoint": "https://my-resource.openai.azure.com",
}
"""Settings that are base URLs, each with an example for its error message."""

MODEL_SETTINGS = (
    "openai_api_key",
    "openai_base_url",
    "azure_openai_api_key",
    "azure_openai_endpoint",
)
"""Any of these set means a real model is meant: development's fake-model default is off."""
AUTH_SETTINGS = (
    "auth_methods",
    "auth_jwks_url",
    "auth_jwt_secret",
    "auth_jwt_issuer",
    "auth_jwt_audience",
    "auth_trust_user_headers",
    "auth_proxy_secret",
)
"""Any of these set means identity is configured: development's header default is off."""

ModelProvider = Literal["openai", "azure", "fake"]
ModelApi = Literal["responses", "chat_completions"]


def comma_items(text: str) -> list[str]:
    """`a, b,,c` as `["a", "b", "c"]`."""
    return [part.strip() for part in text.split(",") if part.strip()]


def split_commas(value: object) -> object:
    """A comma-separated string as a list; anything else (a list from code) as it is."""
    return comma_items(value) if isinstance(value, str) else value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
"""A list setting, written comma-separated in the environment."""
MimeTypeList = Annotated[CommaList, AfterValidator(lambda types: [t.lower() for t in types])]
TierLimits = Annotated[dict[str, int | None], NoDecode]
TIER_LIMIT_SETTINGS = ("rate_limit_daily_messages", "token_quota_daily", "token_quota_monthly")


class ModelPrice(BaseModel):
    """What a million tokens of one model cost: input, cached input, output (reasoning tokens
    are output tokens)."""

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


PriceTable = Annotated[dict[str, ModelPrice], NoDecode]


def normalize_database_url(url: str) -> str:
    """Return an async SQLAlchemy URL for any URL a platform hands us.

    Railway gives `postgresql://…`, Fly and Heroku give `postgres://…?sslmode=…`; all of them must
    end up on asyncpg, which rejects libpq's `sslmode` argument and calls it `ssl` instead.
    """
    url = url.strip()
    scheme, _, rest = url.partition("://")
    if not rest:
        raise ValueError("must look like postgresql://user:pass@host/db or sqlite:///path")
    scheme = scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg2"}:
        parts = urlsplit(f"postgresql+asyncpg://{rest}")
        query = [
            (LIBPQ_TO_ASYNCPG.get(k, k), v)
            for k, v in parse_qsl(parts.query)
            if k not in LIBPQ_ONLY
        ]
        return urlunsplit(parts._replace(query=urlencode(query)))
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"unsupported scheme {scheme!r}: use postgresql:// or sqlite:///")


def parse_tier_limits(text: str) -> dict[str, int | None]:
    """`free=200,pro=unlimited` as `{"free": 200, "pro": None}`."""
    limits: dict[str, int | None] = {}
    for part in comma_items(text):
        tier, sep, raw = (x.strip() for x in part.partition("="))
        if not sep or not tier:
            raise ValueError(f"expected tier=count pairs like free=200,pro=5000, got {part!r}")
        if raw.lower() == "unlimited":
            limits[tier] = None
        elif raw.isdigit():
            limits[tier] = int(raw)
        else:
            raise ValueError(f"{tier}: expected a count or `unlimited`, got {raw!r}")
    return limits


def parse_prices(text: str) -> dict[str, dict[str, str]]:
    """`gpt-4.1=2/0.5/8` as `{"gpt-4.1": {"input": "2", "cached_input": "0.5", "output": "8"}}`.

    The model is everything before the last `=` (names may hold `/` or `:`).
    """
    prices: dict[str, dict[str, str]] = {}
    for part in comma_items(text):
        model, sep, raw = (x.strip() for x in part.rpartition("="))
        figures = raw.split("/")
        if not sep or not model or len(figures) != 3:
            raise ValueError(
                "expected model=input/cached/output prices per million tokens, like "
                f"gpt-4.1-mini=0.40/0.10/1.60, got {part!r}"
            )
        prices[model] = dict(zip(("input", "cached_input", "output"), figures, strict=True))
    return prices


class Settings(BaseSettings):
    """The service's configuration contract (see README, Configuration).

    An empty value (`AUTH_JWT_SECRET=`, as copied from `.env.example`) means unset.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    # Server and database
    environment: Literal["development", "production"] = "development"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pgbouncer: bool = False
    """PgBouncer in transaction mode sits between the app and PostgreSQL: prepared statements
    are neither cached nor reused, since the next transaction may run on another server
    connection."""
    public_base_url: str | None = None
    sse_keepalive_seconds: float = Field(default=15, gt=0, le=300)
    """Seconds of silence after which an SSE comment keeps proxies from cutting the stream."""
    sse_batch_ms: float = Field(default=20, ge=0, le=1000)
    """After a stream's first write, how long it gathers events before the next: fewer, larger
    writes (each one passes every middleware and a system call). 0: each event as it comes."""

    # Turns (see docs/turns.md): answers that outlive the request
    on_disconnect: Literal["finish", "cancel"] = "finish"
    """When the client leaves mid-answer: `finish` the turn in the background and save it whole,
    or `cancel` it (the partial answer is saved with a note)."""
    background_turn_seconds: float = Field(default=300, gt=0, le=86_400)
    """How long a turn may go on once its client has left; then it is cut, and its partial
    answer saved with a readable note."""
    turn_lease_seconds: float = Field(default=30, ge=1, le=3600)
    """How long a thread's lock outlives a silent holder (a crashed process); renewed every
    third of it while the turn runs."""
    turn_progress_seconds: float = Field(default=2.0, gt=0, le=60)
    """A streaming answer is saved at most this often (and at every item's end), so a reload
    mid-answer shows it."""

    # Model provider (see docs/agent.md, "Choosing the model")
    model_provider: ModelProvider = "openai"
    model_api: ModelApi = "responses"
    """Which API the provider is spoken to with: `responses`, or `chat_completions` for the many
    OpenAI-compatible servers that have no Responses API."""
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    azure_openai_endpoint: str | None = None
    """`https://<resource>.openai.azure.com`, for MODEL_PROVIDER=azure."""
    azure_openai_api_key: SecretStr | None = None
    openai_api_version: str | None = None
    """Azure's `api-version`, e.g. `2025-04-01-preview` (the Responses API needs a 2025 one)."""
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    openai_timeout_seconds: float = Field(default=60.0, gt=0)
    model_files_api: Literal["auto", "on", "off"] = "auto"
    """Upload attachments to the provider's Files API once and refer to them by id: `auto`
    for OpenAI and Azure OpenAI, `on` for another server that has one, `off` to send inline."""
    fake_model_tokens: int = Field(default=40, ge=1, le=100_000)
    fake_model_delay_ms: float = Field(default=15.0, ge=0, le=60_000)

    # Agent (see docs/agent.md, "Configuration"): a key AGENT_CONFIG's file sets wins over
    # CHATKIT_MODEL, CHATKIT_INSTRUCTIONS, HISTORY_WINDOW and MCP_CONFIG (`ENV_OVERRIDES`)
    chatkit_model: str = "gpt-4.1-mini"
    """The reply model (on Azure: the deployment's name)."""
    chatkit_instructions: str = (
        "You are a helpful assistant. Be concise. Use the task tools to manage the user's tasks."
    )
    history_window: int = Field(default=30, ge=1, le=500)
    agent_config: Path | None = None
    """`agent.toml`: the agent's name, instructions, model, tools, titles and MCP servers."""
    mcp_config: Path | None = None
    """A JSON file of `mcpServers`, as Claude Desktop, Cursor and VS Code write them."""
    agent_factory: str | None = None
    """`package.module:function` returning the agent (wins over AGENT_CONFIG)."""
    approval_max_age_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    """How long a tool call may wait for the user's approval; an older one is refused."""

    # Identity
    auth_methods: CommaList = Field(default_factory=list)
    """Empty: every method whose settings are present, in the order of `auth_method_names`."""
    auth_jwks_url: str | None = None
    auth_jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("auth_jwt_secret", "better_auth_secret")
    )
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: CommaList = Field(default_factory=list)
    auth_trust_user_headers: bool = False
    auth_proxy_secret: SecretStr | None = None
    auth_headers_allowed_networks: CommaList = Field(default_factory=list)
    """CIDR networks whose clients, besides loopback ones, may send identity headers without
    AUTH_PROXY_SECRET in development (Docker Compose's bridge, whence the host's requests come)."""
    auth_jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    auth_tier_claim: str = "tier"
    auth_default_tier: str = "free"
    auth_jwks_cache_seconds: int = Field(default=600, ge=1)
    auth_jwks_unknown_kid_seconds: int = Field(default=60, ge=0)
    auth_jwks_min_refetch_seconds: float = Field(default=1.0, ge=0, le=30)
    auth_jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Edge: CORS, domain keys and limits
    cors_allow_origins: CommaList = Field(default_factory=lambda: list(DEV_CORS_ORIGINS))
    chatkit_domain_keys: CommaList = Field(default_factory=list)
    chatkit_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    rate_limit_requests_per_minute: int = Field(default=120, ge=0)
    rate_limit_daily_messages: TierLimits = Field(
        default_factory=lambda: dict(DEFAULT_DAILY_MESSAGES)
    )
    max_concurrent_streams_per_user: int = Field(default=3, ge=0)

    # Token usage (see docs/operations.md, "Usage and quotas")
    token_quota_daily: TierLimits = Field(default_factory=dict)
    """Tokens (input + output) per user and UTC day, by tier; empty: no daily token quota."""
    token_quota_monthly: TierLimits = Field(default_factory=dict)
    """Tokens per user and UTC calendar month, by tier; empty: no monthly token quota."""
    usage_prices: PriceTable = Field(default_factory=dict)
    """`model=input/cached/output` in currency units per million tokens: costs in the reports."""

    # Attachments (see docs/attachments.md)
    attachment_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    attachment_allowed_mime_types: MimeTypeList = Field(
        default_factory=lambda: ["image/*", "application/pdf", "text/*"]
    )
    attachment_max_per_message: int = Field(default=10, ge=0)
    attachment_inline_budget_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=2**30)
    """Inline attachments (no Files API) one model request may carry, encoded: older ones past
    it become a note naming the file."""
    attachment_signing_secret: SecretStr | None = None
    attachment_url_ttl_seconds: int = Field(default=3600, ge=10)
    attachment_orphan_max_age_seconds: int = Field(default=24 * 3600, ge=60)
    attachment_cleanup_interval_seconds: int = Field(default=3600, ge=0)
    attachment_storage: Literal["database", "s3"] = "database"
    attachment_s3_bucket: str | None = None
    attachment_s3_endpoint_url: str | None = None
    attachment_s3_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("attachment_s3_region", "aws_region")
    )
    attachment_s3_access_key_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("attachment_s3_access_key_id", "aws_access_key_id"),
    )
    attachment_s3_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("attachment_s3_secret_access_key", "aws_secret_access_key"),
    )
    attachment_s3_session_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("attachment_s3_session_token", "aws_session_token"),
    )
    attachment_s3_prefix: str = "attachments/"

    # The playground page (GET /playground, see README "The playground")
    playground_enabled: bool | None = None
    """None: served in development only."""
    playground_token_url: str | None = None
    playground_domain_key: str = "local-dev"

    # Operations (see docs/operations.md): traces are configured by the standard OTEL_* variables
    metrics_enabled: bool = False
    """Serve Prometheus metrics at `GET /metrics`."""
    metrics_token: SecretStr | None = None
    """The bearer token `/metrics` requires (required in production with METRICS_ENABLED)."""
    trace_user_id: Literal["hashed", "raw"] = "hashed"
    """How a trace's root span names the user: a SHA-256 prefix, or the raw id (opt-in)."""

    @model_validator(mode="after")
    def _development_demo_defaults(self) -> Self:
        """With nothing configured, development is a working local demo (see `demo_notes`).

        The values are written past pydantic so they stay out of `model_fields_set`, which is
        how `demo_model` and `demo_identity` tell a default from a choice.
        """
        if self.demo_model:
            self.__dict__["model_provider"] = "fake"
        if self.demo_identity:
            self.__dict__["auth_trust_user_headers"] = True
        return self

    @model_validator(mode="after")
    def _require_s3_settings(self) -> Self:
        if self.attachment_storage == "s3":
            missing = [
                name.upper()
                for name in (
                    "attachment_s3_bucket",
                    "attachment_s3_access_key_id",
                    "attachment_s3_secret_access_key",
                )
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"ATTACHMENT_STORAGE=s3 needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _pgbouncer_needs_postgres(self) -> Self:
        if self.database_pgbouncer and self.is_sqlite:
            raise ValueError("DATABASE_PGBOUNCER=true needs a postgresql:// DATABASE_URL")
        return self

    @field_validator(
        "model_provider", "model_api", "model_files_api", "on_disconnect", mode="before"
    )
    @classmethod
    def _lower_choice(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _require_azure_settings(self) -> Self:
        if self.model_provider != "azure":
            return self
        missing = [
            name.upper()
            for name in ("azure_openai_endpoint", "openai_api_version")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"MODEL_PROVIDER=azure needs {', '.join(missing)}")
        if self.openai_base_url:
            raise ValueError(
                "MODEL_PROVIDER=azure reaches AZURE_OPENAI_ENDPOINT: unset OPENAI_BASE_URL "
                "(or use MODEL_PROVIDER=openai for Azure's /openai/v1 endpoint)"
            )
        return self

    @field_validator("agent_factory")
    @classmethod
    def _check_factory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must look like package.module:function, e.g. my_agent.agent:build")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("auth_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. https://app.example.com/api/auth/jwks")
        return value or None

    @field_validator("playground_token_url")
    @classmethod
    def _check_token_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. https://app.example.com/api/auth/token")
        return value

    @field_validator(*TIER_LIMIT_SETTINGS, mode="before")
    @classmethod
    def _parse_tier_limits(cls, value: object) -> object:
        """`free=200,pro=5000`: `unlimited` lifts a cap, `*` is the default tier's if unlisted."""
        return parse_tier_limits(value) if isinstance(value, str) else value

    @field_validator("usage_prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        """`gpt-4.1-mini=0.40/0.10/1.60,...`: per million input, cached input, output tokens."""
        return parse_prices(value) if isinstance(value, str) else value

    @field_validator("auth_headers_allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not a CIDR network, e.g. 172.16.0.0/12 or 192.168.65.1/32"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(*BASE_URL_EXAMPLES)
    @classmethod
    def _check_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A base URL: absolute http(s), kept without its trailing slash."""
        if value and not value.startswith(("http://", "https://")):
            example = BASE_URL_EXAMPLES[str(info.field_name)]
            raise ValueError(f"must be an absolute http(s) URL, e.g. {example}")
        return value.rstrip("/") if value else value

    @field_validator("cors_allow_origins")
    @classmethod
    def _bare_origins(cls, value: list[str]) -> list[str]:
        """Browsers send `Origin` without a path or trailing slash; compare like with like."""
        return [origin.rstrip("/") for origin in value]

    @model_validator(mode="after")
    def _quota_for_the_default_tier(self) -> Self:
        """A tier limit that is set must cover the default tier (by name or `*`): unknown tiers
        count as it. The token quotas may be left empty (no token quota)."""
        default = self.auth_default_tier
        for name in TIER_LIMIT_SETTINGS:
            limits: dict[str, int | None] = getattr(self, name)
            if name != "rate_limit_daily_messages" and not limits:
                continue
            if default not in limits and "*" not in limits:
                raise ValueError(
                    f"{name.upper()} names neither AUTH_DEFAULT_TIER ({default}) nor `*`, "
                    f"so users of that tier would have no quota: add {default}=<count> "
                    f"(or {default}=unlimited)"
                )
        return self

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_METRICS_TOKEN_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        """Production refuses to start on unsafe settings, naming every one of them at once."""
        if self.environment == "production" and (problems := self.production_problems()):
            raise ValueError("ENVIRONMENT=production refuses: " + "; ".join(problems))
        return self

    @property
    def auth_method_names(self) -> list[str]:
        """`AUTH_METHODS`, else jwks, hs256 and headers, each if its settings are present."""
        if self.auth_methods:
            return self.auth_methods
        present = {
            "jwks": self.auth_jwks_url,
            "hs256": self.auth_jwt_secret,
            "headers": self.auth_trust_user_headers,
        }
        return [name for name, setting in present.items() if setting]

    @property
    def demo_model(self) -> bool:
        """Development without MODEL_PROVIDER or any model key: the fake model answers."""
        chosen = self.model_fields_set
        return (
            self.environment == "development"
            and "model_provider" not in chosen
            and not any(name in chosen for name in MODEL_SETTINGS)
        )

    @property
    def demo_identity(self) -> bool:
        """Development without any auth setting: identity from `X-User-Id`, else `anonymous`,
        for clients on this machine only (`app/http/auth/local.py`)."""
        return self.environment == "development" and not any(
            name in self.model_fields_set for name in AUTH_SETTINGS
        )

    def demo_notes(self) -> list[str]:
        """What development chose because nothing was configured, as `/readyz` and the log say."""
        notes = []
        if self.demo_model:
            notes.append(
                "Demo model: no OPENAI_API_KEY is set, so the deterministic fake model answers "
                "(set OPENAI_API_KEY for real replies)"
            )
        if self.demo_identity:
            notes.append(
                "Demo identity: no auth method is configured, so the user is X-User-Id "
                "(or `anonymous`), for clients on this machine only (see README, Authentication)"
            )
        return notes

    def production_problems(self) -> list[str]:
        problems = []
        if not self.auth_method_names:
            problems.append(
                "no auth method: set AUTH_JWKS_URL, AUTH_JWT_SECRET (or BETTER_AUTH_SECRET) "
                "or AUTH_TRUST_USER_HEADERS"
            )
        if self.auth_trust_user_headers and not self.auth_proxy_secret:
            problems.append(
                "AUTH_TRUST_USER_HEADERS=true needs AUTH_PROXY_SECRET, "
                "or any browser could claim to be any user"
            )
        secret = self.auth_jwt_secret.get_secret_value() if self.auth_jwt_secret else ""
        if 0 < len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            problems.append(
                f"AUTH_JWT_SECRET (or BETTER_AUTH_SECRET) must be at least "
                f"{MIN_JWT_SECRET_BYTES} bytes"
            )
        if self.model_provider == "openai" and not (self.openai_api_key or self.openai_base_url):
            problems.append("MODEL_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL)")
        if self.model_provider == "azure" and not self.azure_openai_api_key:
            problems.append("MODEL_PROVIDER=azure needs AZURE_OPENAI_API_KEY")
        if self.auth_jwks_url and not (self.auth_jwt_issuer and self.auth_jwt_audience):
            problems.append(
                "AUTH_JWKS_URL needs AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE (your app's base URL "
                "for Better Auth), or tokens minted for another audience would be accepted"
            )
        if self.model_provider == "fake":
            problems.append(
                "MODEL_PROVIDER=fake (a local demo model): set MODEL_PROVIDER=openai and "
                "OPENAI_API_KEY"
            )
        if "*" in self.cors_allow_origins:
            problems.append("CORS_ALLOW_ORIGINS=* (list your app's origins)")
        signing = self.attachment_signing_secret
        if signing is None or len(signing.get_secret_value()) < MIN_JWT_SECRET_BYTES:
            problems.append(
                f"ATTACHMENT_SIGNING_SECRET must be set, at least {MIN_JWT_SECRET_BYTES} "
                "characters: it signs the short-lived attachment upload and preview URLs"
            )
        if self.metrics_enabled and self.metrics_token is None:
            problems.append(
                "METRICS_ENABLED=true needs METRICS_TOKEN (the bearer token your scraper sends), "
                "or anyone could read the metrics"
            )
        return problems

    @cached_property
    def named_tiers(self) -> frozenset[str]:
        """The tiers a limit setting names (`RATE_LIMIT_DAILY_MESSAGES`, `TOKEN_QUOTA_*`)."""
        names = {tier for name in TIER_LIMIT_SETTINGS for tier in getattr(self, name)}
        return frozenset(names - {"*"})

    def known_tier(self, claimed: object) -> str:
        """`claimed` if a limit setting names it, else `AUTH_DEFAULT_TIER`.

        A tier comes from a token claim or a header; one the limits do not name is never
        trusted, so a user who could write their own claim cannot invent an unlimited plan.
        """
        if isinstance(claimed, str) and claimed in self.named_tiers:
            return claimed
        return self.auth_default_tier

    def daily_message_limit(self, tier: str) -> int | None:
        """The tier's daily message quota; None means unlimited (`unlimited` in the setting).

        Unknown tiers count as the default tier, whose quota is its own entry or else `*`.
        """
        return self._tier_limit(self.rate_limit_daily_messages, tier)

    def token_quotas(self, tier: str) -> tuple[int | None, int | None]:
        """The tier's (daily, monthly) token quotas; None is unlimited (or no quota set).

        Unknown tiers count as the default tier, as for messages.
        """
        return (
            self._tier_limit(self.token_quota_daily, tier),
            self._tier_limit(self.token_quota_monthly, tier),
        )

    def _tier_limit(self, limits: dict[str, int | None], tier: str) -> int | None:
        if not limits:
            return None
        if tier != "*" and tier in limits:
            return limits[tier]
        return limits.get(self.auth_default_tier, limits.get("*"))

    @property
    def playground_on(self) -> bool:
        """`PLAYGROUND_ENABLED`, else on in development and off in production."""
        if self.playground_enabled is not None:
            return self.playground_enabled
        return self.environment == "development"

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class ConfigurationError(RuntimeError):
    """Startup refused: the message names each offending environment variable."""


def load_settings() -> Settings:
    """Read the environment, or fail with one line per bad variable (`PORT: …`)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']).upper() or 'SETTINGS'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(problems)) from None
