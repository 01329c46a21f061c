"""Engines turn a document into a summary draft and a checklist draft.

``load_engine`` imports an engine only when a worker needs it, so ``avo
submit`` and ``avo status`` never pay for ``openai``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from avo_cli.errors import EngineError

if TYPE_CHECKING:
    from avo_cli.config import Settings
    from avo_cli.engines.base import Engine

ENGINES = ("auto", "local", "openai")


def resolve_engine_name(settings: Settings) -> str:
    name = settings.engine
    if name == "auto":
        return "openai" if settings.api_key else "local"
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")
    return name


def load_engine(settings: Settings) -> Engine:
    name = resolve_engine_name(settings)
    if name == "local":
        from avo_cli.engines.local import LocalEngine

        return LocalEngine()
    from avo_cli.engines.openai_engine import OpenAIEngine

    return OpenAIEngine.from_settings(settings)
