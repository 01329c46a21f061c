"""Model prices and the cost of a job's token usage.

Prices are US dollars per 1M tokens (input, output), as published by OpenAI
for standard (non-batch) Chat Completions. Override or extend them with a JSON
or TOML file named by ``AVO_PRICES`` (or ``load_prices(path)``)::

    {"my-local-model": {"input": 0, "output": 0}, "gpt-4o-mini": [0.15, 0.6]}

``cost`` returns ``None`` for a model without a price: unknown is not free.
Dated snapshots (``gpt-4o-mini-2024-07-18``) use the price of the longest
known prefix.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from avo_cli.errors import ConfigError

PRICES_ENV = "AVO_PRICES"

#: model -> (USD per 1M input tokens, USD per 1M output tokens)
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}

_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")

_cache: dict[str, dict[str, tuple[float, float]]] = {}


def _price_pair(model: str, raw: Any) -> tuple[float, float]:
    try:
        if isinstance(raw, dict):
            pair = (float(raw["input"]), float(raw["output"]))
        else:
            a, b = raw
            pair = (float(a), float(b))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(
            f"invalid price for {model!r}: expected {{'input': X, 'output': Y}} (USD per 1M tokens)"
        ) from None
    if pair[0] < 0 or pair[1] < 0:
        raise ConfigError(f"invalid price for {model!r}: prices must be >= 0")
    return pair


def load_prices(path: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """Default prices, updated from ``path`` (or ``$AVO_PRICES``) when given."""
    source = str(path) if path is not None else os.environ.get(PRICES_ENV, "")
    if source in _cache:
        return _cache[source]
    prices = dict(DEFAULT_PRICES)
    if source:
        file = Path(source)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read price file {file}: {exc.strerror}") from None
        try:
            if file.suffix.lower() == ".toml":
                import tomllib

                data: Any = tomllib.loads(text)
            else:
                data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"invalid price file {file}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"invalid price file {file}: expected a table of models")
        for model, raw in data.items():
            prices[str(model)] = _price_pair(str(model), raw)
    _cache[source] = prices
    return prices


def price_of(
    model: str, prices: dict[str, tuple[float, float]] | None = None
) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens: exact name, else the name without its date suffix.

    ``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``; an undated variant
    such as ``gpt-4o-audio-preview`` is not guessed from ``gpt-4o`` (None).
    """
    table = load_prices() if prices is None else prices
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in table:
            return table[name]
        undated = _DATED.sub("", name)
        if undated != name and undated in table:
            return table[undated]
    return None


def cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    prices: dict[str, tuple[float, float]] | None = None,
) -> float | None:
    """USD cost of a usage, or None when the model has no known price."""
    price = price_of(model, prices)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
