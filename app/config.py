"""Settings: every environment variable the service reads, validated once at startup.

Field names are the environment variable names (case-insensitive); `.env` is read when present.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./chatkit.db"
DEV_CORS_ORIGINS = ["http://localhost:3000", "http://localhost:5173"]

CommaList = Annotated[list[str], NoDecode]


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
        query = [("ssl", v) if k == "sslmode" else (k, v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"unsupported scheme {scheme!r}: use postgresql:// or sqlite:///")


class Settings(BaseSettings):
    """The service's configuration contract (see README, Configuration)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = "development"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)

    # Model
    model_provider: Literal["openai", "fake"] = "openai"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    chatkit_model: str = "gpt-4.1-mini"
    chatkit_instructions: str = (
        "You are a helpful assistant. Be concise. Use the task tools to manage the user's tasks."
    )
    history_window: int = Field(default=30, ge=1, le=500)
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    openai_timeout_seconds: float = Field(default=60.0, gt=0)
    fake_model_tokens: int = Field(default=40, ge=1, le=100_000)
    fake_model_delay_ms: float = Field(default=15.0, ge=0, le=60_000)

    # Identity
    auth_jwks_url: str | None = None
    auth_jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("auth_jwt_secret", "better_auth_secret")
    )
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_trust_user_headers: bool = False
    auth_proxy_secret: SecretStr | None = None

    # Edge
    cors_allow_origins: CommaList = Field(default_factory=lambda: list(DEV_CORS_ORIGINS))
    chatkit_domain_keys: CommaList = Field(default_factory=list)
    public_base_url: str | None = None

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("cors_allow_origins", "chatkit_domain_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("openai_api_key", "openai_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `OPENAI_API_KEY=` as copied from .env.example means "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _refuse_fake_model_in_production(self) -> Settings:
        if self.environment == "production" and self.model_provider == "fake":
            raise ValueError(
                "MODEL_PROVIDER=fake is a local demo model and is refused when "
                "ENVIRONMENT=production: set MODEL_PROVIDER=openai and OPENAI_API_KEY"
            )
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
