"""Settings from flags, environment, the config file and defaults, in that order.

Every setting has one name (the TOML key), one environment variable and a
default. ``load_settings`` records where each value came from so ``avo config
show`` can explain it. The config file is only read when it exists, so the
start-up path of ``avo submit``/``avo status`` pays nothing for it otherwise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from avo_cli.errors import ConfigError

APP_NAME = "avo"
DEFAULT_MAX_BYTES = 2 * 1024 * 1024


def data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def config_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, appauthor=False)


def config_path() -> Path:
    env = os.environ.get("AVO_CONFIG")
    return Path(env) if env else config_dir() / "config.toml"


def default_db() -> str:
    return str(data_dir() / "avo.db")


@dataclass
class Settings:
    """Worker and client settings; ``api_key`` is never printed or stored."""

    db: str = ""
    engine: str = "auto"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0  # seconds per model request
    lang: str | None = None  # output language of results; None follows the document
    concurrency: int | None = None  # jobs (and openai requests) at once; None: engine default
    lease: float = 60.0  # seconds a claim is valid without a heartbeat
    max_attempts: int = 3
    max_bytes: int = DEFAULT_MAX_BYTES
    context_tokens: int = 128_000  # model context budget before map-reduce
    cache: bool = True  # reuse results of identical documents
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


# name -> (environment variable, type)
_ENV: dict[str, tuple[str, type]] = {
    "db": ("AVO_DB", str),
    "engine": ("AVO_ENGINE", str),
    "model": ("AVO_MODEL", str),
    "base_url": ("OPENAI_BASE_URL", str),
    "api_key": ("OPENAI_API_KEY", str),
    "timeout": ("AVO_TIMEOUT", float),
    "lang": ("AVO_OUTPUT_LANG", str),
    "concurrency": ("AVO_CONCURRENCY", int),
    "lease": ("AVO_LEASE", float),
    "max_attempts": ("AVO_MAX_ATTEMPTS", int),
    "max_bytes": ("AVO_MAX_BYTES", int),
    "context_tokens": ("AVO_CONTEXT_TOKENS", int),
    "cache": ("AVO_CACHE", bool),
}

SETTING_NAMES = tuple(_ENV)
SECRET_SETTINGS = frozenset({"api_key"})
_POSITIVE = frozenset(
    {"timeout", "concurrency", "lease", "max_attempts", "max_bytes", "context_tokens"}
)


def env_var(name: str) -> str:
    return _ENV[name][0]


def coerce(name: str, raw: Any) -> Any:
    """Turn a string (env, CLI ``config set``) or TOML value into the setting's type."""
    if name not in _ENV:
        raise ConfigError(f"unknown setting {name!r}; known: {', '.join(SETTING_NAMES)}")
    kind = _ENV[name][1]
    try:
        if kind is bool:
            if isinstance(raw, bool):
                value: Any = raw
            elif str(raw).strip().lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).strip().lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError(raw)
        elif kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = int(raw)
        elif kind is float:
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = float(raw)
        else:
            value = str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid value for {name}: {raw!r} (expected {kind.__name__})") from None
    if isinstance(value, float) and not math.isfinite(value):
        # A NaN lease would be stored as NULL and never expire: refuse it here.
        raise ConfigError(f"invalid value for {name}: {raw!r} (must be a finite number)")
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"invalid value for {name}: {raw!r} (must be > 0)")
    return value


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import tomllib

    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid config file {path}: {exc}") from None
    return parsed


def load_settings(**flags: Any) -> Settings:
    """Resolve every setting: flag (not None) > environment > config file > default."""
    settings = Settings()
    file_values: dict[str, Any] | None = None
    origins: dict[str, str] = {}
    for f in fields(Settings):
        name = f.name
        if name == "origins":
            continue
        value: Any = flags.get(name)
        origin = "flag"
        if value is None:
            var = _ENV[name][0]
            raw = os.environ.get(var)
            if raw is not None and raw != "":
                value, origin = coerce(name, raw), f"env {var}"
        if value is None:
            if file_values is None:
                file_values = read_config_file()
            if name in file_values:
                value, origin = coerce(name, file_values[name]), "config file"
        if value is None:
            origin = "default"
            value = default_db() if name == "db" else getattr(settings, name)
        elif origin == "flag":
            value = coerce(name, value)
        setattr(settings, name, value)
        origins[name] = origin
    settings.origins = origins
    return settings


def db_location(flag: str | None = None) -> str:
    """The database setting alone: the cheap path for submit/status/list."""
    if flag:
        return flag
    env = os.environ.get("AVO_DB")
    if env:
        return env
    file_db = read_config_file().get("db")
    if file_db:
        return str(file_db)
    return default_db()
