"""Price table, cost computation, and the engine's offline helpers (parsing, chunking)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avo_cli import pricing
from avo_cli.engines.openai_parse import (
    AnswerError,
    estimate_tokens,
    parse_answer,
    split_document,
    strip_fences,
)
from avo_cli.errors import ConfigError
from avo_cli.schema import SummaryDraftModel


def test_default_prices() -> None:
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert pricing.cost("gpt-4o-mini", 2000, 500) == pytest.approx(0.0006)
    assert pricing.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)


def test_dated_model_names_use_the_base_price() -> None:
    assert pricing.price_of("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert pricing.price_of("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)
    assert pricing.price_of("openai/gpt-4o-mini") == (0.15, 0.60)


def test_unknown_models_are_unpriced_not_free() -> None:
    assert pricing.cost("llama3.1:8b", 1000, 1000) is None
    assert pricing.cost("gpt-4o-audio-preview", 1000, 1000) is None


def test_price_file_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"llama3.1:8b": {"input": 0, "output": 0}, "gpt-4o-mini": [1, 2]}))
    monkeypatch.setenv(pricing.PRICES_ENV, str(prices))
    assert pricing.cost("llama3.1:8b", 1000, 1000) == 0.0
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert pricing.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)  # defaults kept
    toml = tmp_path / "prices.toml"
    toml.write_text("[my-model]\ninput = 1.0\noutput = 4.0\n")
    table = pricing.load_prices(toml)
    assert pricing.cost("my-model", 1_000_000, 1_000_000, table) == pytest.approx(5.0)


def test_bad_price_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"m": {"input": "cheap"}}')
    with pytest.raises(ConfigError, match="invalid price"):
        pricing.load_prices(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        pricing.load_prices(tmp_path / "missing.json")


# --- parsing ---------------------------------------------------------------------


def test_strip_fences() -> None:
    assert strip_fences('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_fences('```\n{"a": 1}\n```\n') == '{"a": 1}'
    assert strip_fences('{"a": 1}') == '{"a": 1}'
    assert strip_fences('<think>{maybe} hmm</think>\n```json\n{"a": 1}\n```') == '{"a": 1}'
    good = {"title": "T", "content": "C", "key_points": []}
    chatty = f"Here is the JSON:\n```json\n{json.dumps(good)}\n```\nHope it helps!"
    assert parse_answer(chatty, SummaryDraftModel) == good


def test_parse_answer_errors_are_readable() -> None:
    good = {"title": "T", "content": "C", "key_points": ["k"]}
    assert parse_answer("Here you go:\n" + json.dumps(good), SummaryDraftModel) == good
    with pytest.raises(AnswerError, match="invalid JSON"):
        parse_answer('{"title": ', SummaryDraftModel)
    with pytest.raises(AnswerError, match="key_points"):
        parse_answer('{"title": "T", "content": "C"}', SummaryDraftModel)
    with pytest.raises(AnswerError, match="empty"):
        parse_answer(None, SummaryDraftModel)


def test_token_estimate_counts_hangul_per_char() -> None:
    assert estimate_tokens("a" * 400) == 100
    assert estimate_tokens("코드 리뷰") == 4 + 1  # four syllables, one space
    assert estimate_tokens("가" * 100) == 100


def test_split_document_on_headings_then_paragraphs_then_hard_cut() -> None:
    text = "# T\n\n" + "\n\n".join(f"## S{i}\n\n" + ("word " * 60) for i in range(5))
    chunks = split_document(text, 120)
    assert len(chunks) > 1
    assert all(estimate_tokens(c) <= 120 for c in chunks)
    assert all(c.lstrip().startswith("#") for c in chunks)
    assert " ".join("".join(chunks).split()) == " ".join(text.split())
    hangul = "가" * 1000
    cut = split_document(hangul, 300)
    assert "".join(cut) == hangul and all(len(c) <= 300 for c in cut)
    assert split_document("short", 100) == ["short"]
