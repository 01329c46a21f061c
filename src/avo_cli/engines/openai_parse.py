"""Answer parsing, token estimates and chunking for the OpenAI engine (no network).

Token counts are estimated from characters so the engine never needs a
tokenizer download: about 4 characters per token for Latin text and one token
per CJK/Hangul character (a deliberate over-estimate for Korean).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_ATX = re.compile(r"^#{1,6}\s+\S", re.MULTILINE)


class AnswerError(ValueError):
    """The model's answer is not valid JSON for the expected schema."""


_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def strip_fences(text: str) -> str:
    """Remove a reasoning block (<think>...</think>) and a code fence (```json ... ```)."""
    text = _THINK.sub("", text, count=1).strip()
    match = _FENCE.match(text)
    if match:
        return match.group(1).strip()
    if text.startswith("```"):  # an unterminated fence (truncated answer)
        return text.split("\n", 1)[1].strip() if "\n" in text else ""
    return text


def _extract_object(text: str) -> str:
    """The outermost {...} of an answer with chatter around it, or the text itself."""
    start, end = text.find("{"), text.rfind("}")
    if start > 0 and end > start:
        return text[start : end + 1]
    return text


def parse_answer(text: str | None, model: type[BaseModel]) -> dict[str, Any]:
    """Parse and validate an answer; raises AnswerError with a short, model-readable reason."""
    if not text or not text.strip():
        raise AnswerError("the answer was empty")
    body = strip_fences(text)
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        try:
            data = json.loads(_extract_object(body))
        except json.JSONDecodeError as exc:
            raise AnswerError(
                f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
    if not isinstance(data, dict):
        raise AnswerError(f"expected a JSON object, got {type(data).__name__}")
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:8]:
            loc = ".".join(str(part) for part in err["loc"]) or "(root)"
            problems.append(f"{loc}: {err['msg']}")
        raise AnswerError("schema mismatch: " + "; ".join(problems)) from None
    return validated.model_dump()


# --- token estimates and chunking --------------------------------------------


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0x1100 <= code <= 0x11FF  # Hangul jamo
        or 0x3130 <= code <= 0x318F  # Hangul compatibility jamo
        or 0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
    )


# The same ranges as _is_cjk, for counting in C rather than one Python call per character.
_CJK_CHARS = re.compile(
    "[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f\u3040-\u30ff\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]"
)


def _counts(text: str) -> tuple[int, int]:
    """(CJK/Hangul characters, other characters) of ``text``."""
    other = len(_CJK_CHARS.sub("", text))
    return len(text) - other, other


def _estimate(cjk: int, other: int) -> int:
    return cjk + (other + 3) // 4


def estimate_tokens(text: str) -> int:
    """A network-free token estimate: 1 per CJK/Hangul char, ~4 chars per token otherwise."""
    return _estimate(*_counts(text))


def _split_sections(text: str) -> list[str]:
    """Split before every ATX heading (# ...); the text before the first one is a section too."""
    starts = [m.start() for m in _ATX.finditer(text)]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


def _hard_cut(text: str, budget: int) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    tokens = 0.0
    for ch in text:
        cost = 1.0 if _is_cjk(ch) else 0.25
        if tokens + cost > budget and current:
            pieces.append("".join(current))
            current, tokens = [], 0.0
        current.append(ch)
        tokens += cost
    if current:
        pieces.append("".join(current))
    return pieces


def _pack(parts: list[str], budget: int, sep: str) -> list[str]:
    """Greedily join consecutive parts while the estimate stays within the budget."""
    # Character counts add up, so the estimate of a candidate is computed from running
    # counts instead of re-reading the growing chunk (quadratic on a 1 MB document).
    chunks: list[str] = []
    current: list[str] = []
    cjk = other = 0
    sep_cjk, sep_other = _counts(sep)
    for part in parts:
        part_cjk, part_other = _counts(part)
        if current:
            cand_cjk, cand_other = cjk + sep_cjk + part_cjk, other + sep_other + part_other
            if _estimate(cand_cjk, cand_other) > budget:
                chunks.append(sep.join(current))
                current, cjk, other = ([part], part_cjk, part_other) if part else ([], 0, 0)
                continue
            current.append(part)
            cjk, other = cand_cjk, cand_other
        elif part:
            current, cjk, other = [part], part_cjk, part_other
    if current:
        chunks.append(sep.join(current))
    return chunks


def split_document(text: str, budget: int) -> list[str]:
    """Chunks within ``budget`` estimated tokens: split on headings, paragraphs, then hard cuts."""
    budget = max(budget, 16)
    if estimate_tokens(text) <= budget:
        return [text]
    pieces: list[str] = []
    for section in _split_sections(text):
        if estimate_tokens(section) <= budget:
            pieces.append(section.strip("\n"))
            continue
        for para in re.split(r"\n\s*\n", section):
            if not para.strip():
                continue
            if estimate_tokens(para) <= budget:
                pieces.append(para.strip("\n"))
            else:
                pieces.extend(_hard_cut(para, budget))
    sections = _pack(pieces, budget, "\n\n")
    return [s for s in sections if s.strip()]
