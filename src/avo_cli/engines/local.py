"""The offline engine: an extractive summary and a rule checklist, no network, no model.

``summarize_text`` picks the document's most informative sentences (term
frequency, position, rule-ness) and returns them in document order;
``extract_checklist`` turns normative statements (RFC 2119 keywords,
imperatives, constraints, Korean request/obligation endings) into items, one
category per section heading. Both are deterministic and linear in the input.
The parsing lives in ``local_blocks``, the rule classifier in ``local_rules``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from avo_cli.engines.base import (
    CategoryDraft,
    ChecklistDraft,
    Document,
    ItemDraft,
    StageResult,
    SummaryDraft,
    Usage,
)
from avo_cli.engines.local_blocks import Block, Parsed, parse
from avo_cli.engines.local_rules import classify, classify_text, split_sentences


def _words(s: str) -> list[str]:
    return s.split()


RULES_VERSION = "1"
SUMMARY_WORDS = 120
MAX_KEY_POINTS = 7
KEY_POINT_WORDS = 30
_PURPOSE = re.compile(
    r"\b(?:this|these)\s+(?:guide|guidelines|document|policy|page|rules|runbook|standard)\b|"
    r"(?:이|본)\s*(?:문서|가이드|지침|규칙|정책)",
    re.IGNORECASE,
)
_RULES_LABEL = re.compile(
    r"(?:규칙|규약|컨벤션|원칙|요구\s*사항|rules?|conventions?|requirements?|guidelines?|standards?)"
    r"\s*:?$",
    re.IGNORECASE,
)
_SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", ":", ";", '"', "'", ")", "”", "’", "…")
_EXAMPLE_PREFIXES = ("for example", "for instance", "e.g.", "예를 들어", "예:")
_THREAD_THRESHOLD = 64 * 1024  # larger documents are processed off the event loop

_TOKEN = re.compile(r"[0-9a-z가-힣][0-9a-z가-힣_'-]+")
_STOPWORDS = frozenset(
    _words(
        """
        the and for are but not you your with this that from have has was were will would can
        could all any our their them they its it's into out use used using when where which
        who what how why than then there these those also such only more most other some each
        every been being about over under after before should must may shall does did doing
        just very own same both few
        이 그 저 및 등 수 것 때 더 또는 그리고 있습니다 합니다 됩니다 있는 하는 모든 경우 위해
        a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 - ' _
        """
    )
)


def _title_from_source(source: str) -> str:
    name = source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    if not name or name in ("-", "<stdin>"):
        return "Untitled document"
    if "." in name[1:]:
        name = name.rsplit(".", 1)[0]
    return name or "Untitled document"


def _title(parsed: Parsed, source: str) -> str:
    if parsed.front_title:
        return parsed.front_title
    if parsed.sections:
        return parsed.sections[0]
    return _title_from_source(source)


def _as_sentence(text: str) -> str:
    """A list item without final punctuation gets a full stop when joined into prose."""
    return text if text.endswith(_SENTENCE_ENDS) else f"{text}."


def _clip(text: str, words: int) -> str:
    parts = text.split()
    if len(parts) <= words:
        return text
    return " ".join(parts[:words]) + "…"  # still `words` words


# --- checklist ------------------------------------------------------------------------------

_LEVEL_HEADER = re.compile(
    r"^(?:required|requirement|level|severity|priority|type|kind|mandatory|status|"
    r"필수|필수\s*여부|구분|수준|중요도|유형|등급)$",
    re.IGNORECASE,
)
# a column whose header says each row is a limit or a requirement
_LIMIT_HEADER = re.compile(
    r"\b(?:minimum|maximum|min|max|limit|limits|threshold|at\s+least|at\s+most|requirements?|"
    r"rules?|policy|mandatory)\b|최소|최대|한도|상한|하한|규칙|요구\s*사항|정책",
    re.IGNORECASE,
)
# a cell that is a statement ("Logs are kept for 90 days"), not a requirement value
_STATEMENT = re.compile(
    r"\b(?:is|are|was|were|has|have|had|will|can|gets?|runs?|happens?)\b|(?:니다|다)[.]?$",
    re.IGNORECASE,
)
_LEVEL_REQUIRED = frozenset(
    _words(
        """
        required must mandatory yes y o ✓ ✔ 필수 예 high critical error 강제 requirement
        """
    )
)
_LEVEL_OPTIONAL = frozenset(
    _words(
        """
        optional should recommended may no n x ✗ 권장 선택 아니오 low warning info 추천
        recommendation suggestion
        """
    )
)


def _level(cell: str) -> bool | None:
    value = cell.strip().lower()
    if value in _LEVEL_REQUIRED:
        return True
    if value in _LEVEL_OPTIONAL:
        return False
    return None


def _row_item(block: Block) -> ItemDraft | None:
    cells = block.cells
    header = block.header
    level: bool | None = None
    text_cells: list[tuple[int, str]] = []
    for j, cell in enumerate(cells):
        if not cell:
            continue
        head = header[j] if j < len(header) else ""
        lv = _level(cell)
        if lv is not None and (_LEVEL_HEADER.match(head.strip()) or len(cell) <= 12):
            level = lv
            continue
        text_cells.append((j, cell))
    rule_idx = -1
    verdict: bool | None = None
    for j, cell in text_cells:
        verdict = classify_text(cell, in_list=True)
        if verdict is not None:
            rule_idx = j
            break
    if rule_idx < 0:
        limit_cols = [j for j, h in enumerate(header) if _LIMIT_HEADER.search(h)]
        under = [cells[j] for j in limit_cols if j < len(cells) and cells[j]]
        if text_cells and under and not any(_STATEMENT.search(c) for c in under):
            # "| Body text | 4.5:1 |" under "Minimum contrast" (or "Requirement"): a rule
            first = text_cells[0][1]
            rest = ", ".join(c for _, c in text_cells[1:])
            text = f"{first}: {rest}" if rest else first
            return {"text": text, "required": True if level is None else level}
        if level is None or not text_cells:
            return None
        rule_idx = text_cells[-1][0]
        verdict = level
    text = cells[rule_idx]
    first_j, first = text_cells[0]
    if first_j != rule_idx and len(first.split()) <= 6:
        text = f"{first}: {text}"
    required = level if level is not None else bool(verdict)
    return {"text": text, "required": required}


def _fold(parent: str, children: list[str]) -> str:
    joined = "; ".join(children)
    if parent.endswith(":"):
        return f"{parent} {joined}"
    return f"{parent} ({joined})"


@dataclass
class _Analysis:
    parsed: Parsed
    rules: list[tuple[int, ItemDraft]]  # (section, item) in document order
    cands: list[tuple[int, int, str, bool]]  # (position, section, sentence, is_rule)


def _analyse_uncached(text: str) -> _Analysis:
    parsed = parse(text)
    blocks = parsed.blocks
    # classify every block once: list items as a whole, prose sentence by sentence
    item_verdicts: list[bool | None] = []
    prose: list[list[tuple[str, bool | None]]] = []
    for b in blocks:
        if b.kind == "item":
            item_verdicts.append(classify_text(b.text, in_list=True))
            prose.append([])
        else:
            item_verdicts.append(None)
            if b.kind == "row":
                prose.append([])
            else:
                prose.append([(s, classify(s)) for s in split_sentences(b.text)])
    cands: list[tuple[int, int, str, bool]] = []
    for idx, b in enumerate(blocks):
        if b.kind == "item":
            cands.append((len(cands), b.section, b.text, item_verdicts[idx] is not None))
        else:
            for sentence, verdict in prose[idx]:
                cands.append((len(cands), b.section, sentence, verdict is not None))
    return _Analysis(parsed, _rules(blocks, item_verdicts, prose), cands)


def _rules(
    blocks: list[Block],
    verdicts: list[bool | None],
    prose: list[list[tuple[str, bool | None]]],
) -> list[tuple[int, ItemDraft]]:
    children: dict[int, list[int]] = {}
    for idx, b in enumerate(blocks):
        if b.kind == "item" and b.parent >= 0:
            children.setdefault(b.parent, []).append(idx)
    folded: set[int] = set()
    out: list[tuple[int, ItemDraft]] = []
    n = len(blocks)
    for idx, b in enumerate(blocks):
        if b.kind == "row":
            row = _row_item(b)
            if row is not None:
                out.append((b.section, row))
            continue
        if b.kind == "item":
            if idx in folded:
                continue
            verdict = verdicts[idx]
            if verdict is None:
                if _RULES_LABEL.search(b.text):
                    # "Naming rules:" + "JSON fields in camelCase": the children are rules
                    for c in children.get(idx, []):
                        if verdicts[c] is None:
                            verdicts[c] = True
                continue
            text = b.text
            subs = [c for c in children.get(idx, []) if verdicts[c] is None]
            if subs:
                text = _fold(text, [blocks[c].text for c in subs])
                folded.update(subs)
                for c in subs:  # grandchildren of a folded fragment go with it
                    folded.update(children.get(c, []))
            out.append((b.section, {"text": text, "required": verdict}))
            continue
        # paragraphs and quotes: one item per rule sentence
        sentences = prose[idx]
        for k, (sentence, verdict) in enumerate(sentences):
            if b.intro and k == len(sentences) - 1:
                # the sentence introduces the list that follows it
                run: list[int] = []
                for j in range(idx + 1, n):
                    if blocks[j].kind != "item":
                        break
                    if blocks[j].depth == 0:
                        run.append(j)
                if run and all(verdicts[j] is None for j in run):
                    # "Never commit the following:" + fragment bullets -> one folded item
                    if verdict is not None:
                        text = _fold(sentence, [blocks[j].text for j in run])
                        out.append((b.section, {"text": text, "required": verdict}))
                    continue
                if run:
                    continue  # "Follow these steps:" only introduces rule items
            if verdict is not None:
                out.append((b.section, {"text": sentence, "required": verdict}))
    return out


@lru_cache(maxsize=2)
def _analyse(text: str) -> _Analysis:
    """Both stages of a job read the same analysis (treated as read-only)."""
    return _analyse_uncached(text)


def clear_caches() -> None:
    """Forget cached analyses (benchmarks)."""
    _analyse.cache_clear()
    parse.cache_clear()


def _checklist(a: _Analysis, source: str) -> ChecklistDraft:
    parsed = a.parsed
    if not a.rules:
        return {"categories": []}
    if parsed.sections:
        pre_name = parsed.front_title or "General"
    else:
        title = _title(parsed, source)
        pre_name = "General" if title == "Untitled document" else title
    names = [pre_name, *parsed.sections]
    buckets: list[list[ItemDraft]] = [[] for _ in names]
    for section, item in a.rules:
        buckets[section + 1].append({"text": item["text"], "required": item["required"]})
    categories: list[CategoryDraft] = [
        {"name": name, "items": items} for name, items in zip(names, buckets, strict=True) if items
    ]
    return {"categories": categories}


def extract_checklist(text: str, source: str = "") -> ChecklistDraft:
    """The checklist draft of a document: one category per section that holds rules."""
    return _checklist(_analyse(text), source)


# --- summary --------------------------------------------------------------------------------


def _scores(cands: list[tuple[int, int, str, bool]]) -> list[float]:
    lowers = [c[2].lower() for c in cands]
    tokens = [_TOKEN.findall(low) for low in lowers]
    freq: Counter[str] = Counter()
    for words in tokens:
        freq.update(words)
    top = max((c for w, c in freq.items() if w not in _STOPWORDS), default=1)
    scores: list[float] = []
    seen_sections: set[int] = set()
    for (pos, section, sentence, is_rule), words, low in zip(cands, tokens, lowers, strict=True):
        uniq = set(words)
        uniq -= _STOPWORDS
        # integer sum: independent of set order, so the result is deterministic
        score = sum(map(freq.__getitem__, uniq)) / top / (len(uniq) + 4) * 4 if uniq else 0.0
        if is_rule:
            score += 0.4
        if pos < 3:  # the opening usually says what the document is about
            score += 0.4 - 0.1 * pos
        if ("this " in low or "these " in low or not low.isascii()) and _PURPOSE.search(low):
            score += 0.3
        if section not in seen_sections:
            seen_sections.add(section)
            score += 0.2
        n_words = sentence.count(" ") + 1
        if n_words < 4 and len(sentence) < 16:
            score -= 0.5
        if n_words > 45:
            score -= 0.4
        if sentence.endswith("?") or low.startswith(_EXAMPLE_PREFIXES):
            score -= 1.0
        elif not is_rule and not sentence.endswith(_SENTENCE_ENDS):
            score -= 0.6  # a fragment: a path, a label, a name
        scores.append(score)
    return scores


def _summary(a: _Analysis, source: str) -> SummaryDraft:
    parsed, cands = a.parsed, a.cands
    title = _title(parsed, source)
    if not cands:
        fallback = "; ".join(parsed.sections) or title
        return {"title": title, "content": _clip(fallback, SUMMARY_WORDS), "key_points": [title]}
    scores = _scores(cands)
    order = sorted(range(len(cands)), key=lambda k: (-scores[k], k))
    chosen: list[int] = []
    budget = SUMMARY_WORDS
    for k in order[:400]:
        if scores[k] < 0 and chosen:
            break  # questions, examples, fragments: only when nothing else exists
        words = len(cands[k][2].split())
        if words <= budget:
            chosen.append(k)
            budget -= words
        if budget < 4:
            break
    if not chosen:
        content = _clip(cands[order[0]][2], SUMMARY_WORDS)
    else:
        content = " ".join(_as_sentence(cands[k][2]) for k in sorted(chosen))
    return {"title": title, "content": content, "key_points": _key_points(a, order)}


def _key_points(a: _Analysis, order: list[int]) -> list[str]:
    parsed, cands = a.parsed, a.cands
    per_section: dict[int, list[ItemDraft]] = {}
    for section, item in a.rules:
        per_section.setdefault(section, []).append(item)
    if len(per_section) >= 2:
        sections = sorted(per_section, key=lambda s: (-len(per_section[s]), s))[:MAX_KEY_POINTS]
        points = []
        for s in sorted(sections):
            items = per_section[s]
            best = next((it for it in items if it["required"]), items[0])
            name = parsed.sections[s] if s >= 0 else (parsed.front_title or "General")
            points.append(f"{name.rstrip(':')}: {_clip(best['text'], KEY_POINT_WORDS)}")
        return points
    n = max(1, min(MAX_KEY_POINTS, (len(cands) + 1) // 2))
    return [_clip(cands[k][2], KEY_POINT_WORDS) for k in sorted(order[:n])]


def summarize_text(text: str, source: str = "") -> SummaryDraft:
    """The summary draft of a document: title, extractive content, key points."""
    return _summary(_analyse(text), source)


# --- engine ---------------------------------------------------------------------------------


class LocalEngine:
    """Offline, deterministic extractive engine (no network, no model)."""

    source = "local_extractive"
    model = f"avo-local-{RULES_VERSION}"
    checkpoints = False
    max_concurrency: int | None = 1
    marks_requests = False

    def cache_key(self) -> str | None:
        return None

    async def summarize(self, doc: Document) -> StageResult:
        if len(doc.text) > _THREAD_THRESHOLD:
            import asyncio  # only here: importing the engine stays light

            draft = await asyncio.to_thread(summarize_text, doc.text, doc.source)
        else:
            draft = summarize_text(doc.text, doc.source)
        return StageResult(draft=draft, usage=Usage())

    def checklist_without_summary(self, doc: Document) -> bool:
        return False  # CPU-bound: nothing to overlap

    async def checklist(self, doc: Document, summary: SummaryDraft | None) -> StageResult:
        if len(doc.text) > _THREAD_THRESHOLD:
            import asyncio

            draft = await asyncio.to_thread(extract_checklist, doc.text, doc.source)
        else:
            draft = extract_checklist(doc.text, doc.source)
        if len(doc.text) > _THREAD_THRESHOLD:
            _analyse.cache_clear()  # the job is done: do not keep a large analysis alive
        return StageResult(draft=draft, usage=Usage())

    async def aclose(self) -> None:
        return None
