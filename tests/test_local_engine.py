"""The offline engine: parsing, rule classification, summary and the engine contract."""

from __future__ import annotations

import asyncio
import re

import pytest

from avo_cli.engines.base import Document
from avo_cli.engines.local import LocalEngine, extract_checklist, summarize_text
from avo_cli.engines.local_rules import classify


def items(text: str) -> list[tuple[str, str, bool]]:
    """(category, text, required) for every checklist item."""
    return [
        (cat["name"], it["text"], it["required"])
        for cat in extract_checklist(text)["categories"]
        for it in cat["items"]
    ]


def texts(text: str) -> list[str]:
    return [t for _, t, _ in items(text)]


def names(text: str) -> list[str]:
    return [cat["name"] for cat in extract_checklist(text)["categories"]]


# --- headings ----------------------------------------------------------------------------


def test_atx_headings_with_closing_hashes_and_markup() -> None:
    doc = "# Guide\n\n## **Naming** ##\n\n- Use snake_case.\n\n### `Tests`\n\n- Write tests.\n"
    assert names(doc) == ["Naming", "Tests"]


def test_setext_headings_and_thematic_break() -> None:
    doc = "Style\n=====\n\nUse tabs.\n\nReview\n------\n\nBe kind.\n\n---\n\nKeep it short.\n"
    assert items(doc) == [
        ("Style", "Use tabs.", True),
        ("Review", "Be kind.", True),
        ("Review", "Keep it short.", True),
    ]


def test_html_headings() -> None:
    doc = "<h1>Guide</h1>\n<h2 id='x'>Security</h2>\n\n- Rotate keys every month.\n"
    assert items(doc) == [("Security", "Rotate keys every month.", True)]


def test_rst_underlines_and_overlines() -> None:
    doc = (
        "=========\nAPI rules\n=========\n\nNaming\n======\n\nUse plural nouns.\n\n"
        "Errors\n~~~~~~\n\nReturn problem documents.\n\nPaging\n^^^^^^\n\nPaginate lists.\n\n"
        "Misc\n****\n\nLog the request ID.\n"
    )
    assert names(doc) == ["Naming", "Errors", "Paging", "Misc"]


def test_rst_tilde_underline_is_not_a_code_fence() -> None:
    doc = "Pagination\n~~~~~~~~~~\n\nPaginate every list endpoint.\n"
    assert items(doc) == [("Pagination", "Paginate every list endpoint.", True)]


def test_content_before_first_heading_and_no_headings() -> None:
    doc = "Run the linter.\n\n# Tests\n\nWrite tests.\n"
    assert names(doc) == ["General", "Tests"]
    fm = "---\ntitle: House rules\n---\nRun the linter.\n\n# Tests\n\nWrite tests.\n"
    assert names(fm) == ["House rules", "Tests"]
    flat = "Run the linter. Write tests.\n"
    assert [c["name"] for c in extract_checklist(flat, "docs/rules.md")["categories"]] == ["rules"]
    assert [c["name"] for c in extract_checklist(flat, "-")["categories"]] == ["General"]


# --- lists, tables, quotes ----------------------------------------------------------------


def test_numbered_steps_and_nested_bullets() -> None:
    doc = (
        "# Release\n\n"
        "1. Update the changelog.\n"
        "2. Tag the release:\n"
        "   - an annotated tag\n"
        "   - signed with your key\n"
        "3. Push the tag.\n"
        "    - Announce it in the channel.\n"
    )
    assert texts(doc) == [
        "Update the changelog.",
        "Tag the release: an annotated tag; signed with your key",
        "Push the tag.",
        "Announce it in the channel.",
    ]


def test_children_of_a_rules_label_are_rules() -> None:
    doc = (
        "- 필드 이름 규칙\n  - JSON 필드는 camelCase\n"
        "- Naming conventions:\n  - snake_case modules\n"
    )
    assert items(doc) == [
        ("General", "JSON 필드는 camelCase", True),
        ("General", "snake_case modules", True),
    ]


def test_wrapped_bullet_is_one_item_with_collapsed_whitespace() -> None:
    doc = "- Raise the most specific exception,\n  and include   the value.\n  It helps.\n"
    assert texts(doc) == ["Raise the most specific exception, and include the value. It helps."]


def test_table_rows_with_level_column() -> None:
    doc = (
        "# Logging\n\n| Topic | Rule | Level |\n|---|---|---|\n"
        "| PII | Do not log card numbers | Required |\n"
        "| Level | Log at INFO in production | Optional |\n"
        "| Retention | Logs are kept for 90 days | |\n"
    )
    assert items(doc) == [
        ("Logging", "PII: Do not log card numbers", True),
        ("Logging", "Level: Log at INFO in production", False),
    ]


def test_rows_of_a_limits_table_are_rules() -> None:
    doc = "| Element | Minimum contrast |\n|---|---|\n| Body text | 4.5:1 |\n"
    assert items(doc) == [("General", "Body text: 4.5:1", True)]


def test_rows_of_a_requirement_table_are_rules() -> None:
    doc = "| Signal | Requirement |\n|---|---|\n| Logs | Structured JSON via slog |\n"
    assert items(doc) == [("General", "Logs: Structured JSON via slog", True)]


def test_korean_bnida_steps_are_rules() -> None:
    doc = "1. 스테이징 서버에 접속해 봅니다.\n2. 설정은 반나절 걸렸습니다.\n"
    assert texts(doc) == ["스테이징 서버에 접속해 봅니다."]


def test_block_quote_rules_and_explanations() -> None:
    doc = "> Force-pushing to `main` is not allowed. The branch is protected.\n"
    assert items(doc) == [("General", "Force-pushing to main is not allowed.", True)]


def test_abbreviations_do_not_split_sentences() -> None:
    doc = "Name branches after the issue, e.g. Fix-123. The bot checks names.\n"
    assert texts(doc) == ["Name branches after the issue, e.g. Fix-123."]


def test_github_admonition_marker_is_removed() -> None:
    doc = "> [!WARNING]\n> Never force-push to main.\n"
    assert texts(doc) == ["Never force-push to main."]


def test_code_comments_front_matter_and_link_definitions_are_never_items() -> None:
    doc = (
        "---\ntitle: T\nrule: Use tabs.\n---\n\n# A\n\n"
        "```python\n# Use spaces.\nrun()\n```\n\n"
        "~~~\nDo not do this.\n~~~\n\n"
        "    Use indented code.\n\n"
        "<!-- Never commit.\n     Always push. -->\n\n"
        "[ref]: https://example.com/Use-this\n\n"
        "***\n\n"
        "Keep it simple.\n"
    )
    assert texts(doc) == ["Keep it simple."]


def test_toml_front_matter_gives_the_title() -> None:
    doc = '+++\ntitle = "Toml title"\n+++\n\nUse tabs.\n'
    assert summarize_text(doc)["title"] == "Toml title"


def test_intro_sentence_folds_fragment_bullets() -> None:
    doc = "Never commit the following:\n\n- API keys\n- passwords\n"
    assert items(doc) == [("General", "Never commit the following: API keys; passwords", True)]
    steps = "Follow these steps:\n\n1. Fork the repository.\n2. Clone it.\n"
    assert texts(steps) == ["Fork the repository.", "Clone it."]


# --- required / optional precedence -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("You must not commit secrets.", True),
        ("Associate every input with a visible label.", True),
        ("Tip: use the access portal to renew grants.", False),
        ("Naming: use snake_case for modules.", True),
        ("Build metadata MAY be appended after a plus sign.", False),
        ("Releases MUST follow Semantic Versioning.", True),
        ("Unfreeze main.", True),
        ("Ask for help early.", True),
        ("함수 하나가 50줄을 넘으면 나눠야 해요.", True),
        ("!important는 쓰면 안 돼요.", True),
        ("약어는 되도록 쓰지 않는 게 좋아요.", False),
        ("Treat data of unknown class as Restricted.", True),
        ("Engineers may use production data only with a ticket.", True),
        ("[권장] 목록 API에 커서 기반 페이지네이션 적용", False),
        ("[필수] 응답 시간은 300ms 이내", True),
        ("(Optional) Add a screenshot.", False),
        ("Required: a linked issue", True),
        ("Code that must run on Python 3.8 should avoid the walrus operator.", False),
        ("Docs — update the README when behaviour changes.", True),
        ("**Tests**: write a test for every bug fix.", True),
        ("If in doubt, ask.", True),
        ("Pull requests without tests will not be merged.", True),
        ("Changes to the public API need two approvals.", True),
        ("It is important to write tests.", True),
        ("Only use the public API.", True),
        ("No force pushes to main.", True),
        ("Ideally, keep pull requests small.", False),
        ("민감 정보는 로그에 남기지 않도록 합니다.", True),
        ("모든 API는 인증을 원칙으로 한다.", True),
        ("입력값을 검증할 필요가 있습니다.", True),
        ("외부 라이브러리 사용을 지양합니다.", False),
        ("커밋 메시지 제목은 50자 이내로 작성한다.", True),
        ("태그는 릴리스 담당자만 생성할 수 있다.", True),
        ("You should never commit secrets.", False),
        ("You should always run the tests.", False),
        ("Never commit secrets.", True),
        ("Always run the tests.", True),
        ("Avoid global state.", False),
        ("Avoid global state; it must never leak between tests.", True),
        ("Use of globals is discouraged.", False),
        ("Tests shall pass before merging.", True),
        ("A detail field is recommended.", False),
        ("You may use a dataclass.", False),
        ("Consider splitting large modules.", False),
        ("Prefer composition over inheritance.", False),
        ("Do not use print.", True),
        ("Don't use print.", True),
        ("Please run the linter.", True),
        ("Make sure the build is green.", True),
        ("If a test is flaky, mark it with a reason.", True),
        ("Secrets are not allowed in logs.", True),
        ("Approval from two maintainers is required.", True),
        ("Vendored code is prohibited.", True),
        ("We are limited to OSI-approved licenses.", True),
        ("Every change needs to be reviewed.", True),
        ("The build has to pass.", True),
        ("Clients ought to treat the cursor as opaque.", False),
        ("It's advisable to log the request ID.", False),
        ("It is better to fail early.", False),
        ("Try to keep functions short.", False),
        ("Only maintainers may tag a release.", True),
        ("비밀번호는 반드시 암호화해야 합니다.", True),
        ("사용하지 않는 코드는 삭제하는 것이 좋습니다.", False),
        ("반드시 테스트를 작성하는 것이 좋습니다.", False),
        ("평문 저장은 금지됩니다.", True),
        ("비밀번호를 로그에 남기지 마세요.", True),
        ("커밋 전에 린터를 실행하세요.", True),
        ("변경 이유를 적어 주십시오.", True),
        ("테스트를 작성할 것.", True),
        ("리뷰 코멘트는 정중하게 작성하는 것을 권장합니다.", False),
        ("force push는 하지 않습니다.", True),
    ],
)
def test_required_optional_precedence(sentence: str, expected: bool) -> None:
    assert classify(sentence) is expected


@pytest.mark.parametrize(
    "sentence",
    [
        "This is because two people often pick up the same idea.",
        "We adopted this process in 2019.",
        "What happens if CI is red?",
        "For example, a bug fix gets one line under Fixed.",
        "e.g. use fix/123-name",
        "Testing is important.",
        "Test coverage is measured by CI.",
        "Python 3.11",
        "The default page size is 50.",
        "Rate limiting is handled by the gateway team.",
        "Small fixes do not need an issue.",
        "It is not necessary to squash.",
        "Meanwhile the build runs.",
        "Tip: the access portal shows which of your grants expire soon.",
        "Note: the incident bot creates the channel automatically.",
        "Yesterday the build broke.",
        "A quick way to check this is to try to complete the task.",
        'The key words "MUST" and "MAY" are to be interpreted as described in RFC 2119.',
        "Ask in #releases if you need access.",
        "궁금한 점이 있으면 언제든 #frontend 채널에 물어보세요.",
        "이름을 잘 지으면 주석이 거의 필요 없어요.",
        "모니터링 도구 사용법은 운영 가이드를 참고하세요.",
        "No need to squash.",
        "You do not need to squash.",
        "You don't have to rebase.",
        "이 문서는 팀의 Git 규칙을 정리한다.",
        "대부분의 사고는 잘못된 리베이스에서 시작된다.",
        "기본 브랜치는 main이다.",
        "fix",
        "...",
        "로그는 90일 동안 보관됩니다.",
        "왜 Squash 방식일까요?",
        "예를 들어 이름에 따옴표가 들어오면 쿼리가 깨집니다.",
        "기록을 읽기 쉽게 유지하기 위해서입니다.",
    ],
)
def test_non_rules(sentence: str) -> None:
    assert classify(sentence) is None


def test_korean_haeyo_list_items_are_rules() -> None:
    doc = "## 네이밍\n\n- 컴포넌트 이름은 PascalCase로 지어요.\n- 테스트가 있어요.\n"
    assert items(doc) == [("네이밍", "컴포넌트 이름은 PascalCase로 지어요.", True)]


def test_korean_list_procedures_and_noun_endings() -> None:
    doc = (
        "## 절차\n\n1. 리뷰어를 지정합니다.\n2. 변경 로그 작성\n\n"
        "접근성 점검은 분기마다 진행합니다.\n"
    )
    assert items(doc) == [
        ("절차", "리뷰어를 지정합니다.", True),
        ("절차", "변경 로그 작성", True),
    ]


def test_paragraph_sentences_are_split_into_rules_and_non_rules() -> None:
    doc = (
        "# Review\n\nReviewers must respond within two days. A good review takes half an hour. "
        "Be kind and specific. Why? Because people read it.\n"
    )
    assert items(doc) == [
        ("Review", "Reviewers must respond within two days.", True),
        ("Review", "Be kind and specific.", True),
    ]


def test_document_without_rules_has_empty_checklist() -> None:
    doc = "# History\n\nThe project started in 2019. It has grown a lot since then.\n"
    assert extract_checklist(doc) == {"categories": []}


def test_link_only_and_heading_like_bullets_are_not_items() -> None:
    doc = "- [Style guide](https://example.com/style)\n- Python 3.11\n- Run the tests.\n"
    assert texts(doc) == ["Run the tests."]


# --- markup removal and hostile text ---------------------------------------------------------


def test_item_text_strips_markdown_and_keeps_the_rest_verbatim() -> None:
    doc = (
        "- **Always** use `snake_case` for [names](https://x.y/z) and ![img](a.png) "
        "<em>really</em>; see \\*notes\\*.\n"
    )
    assert texts(doc) == ["Always use snake_case for names and img really; see *notes*."]


def test_hostile_text_is_kept_verbatim() -> None:
    hostile = "Use [bold]rich[/bold] markup \x1b[31mred\x1b[0m \u202eRTL\u200b zero-width\x07."
    doc = "\ufeff# Rules\r\n\r\n- " + hostile + "\r\n\t- Keep <T> generics.\r\n"
    assert items(doc) == [("Rules", hostile, True), ("Rules", "Keep <T> generics.", True)]


def test_very_long_single_line_does_not_crash_and_is_linear() -> None:
    line = "Use the " + "x" * 100_000 + " value."
    assert texts(line) == [line]
    stars = "*a " * 40_000 + "`" * 3 + "_b " * 30_000
    extract_checklist(stars)
    summarize_text(stars)


# --- summary ---------------------------------------------------------------------------------

GUIDE = """---
title: "Team *Guide*"
---

# Ignored heading title

Our team writes Python services. This guide collects the rules we review against.

## Formatting

Format code with ruff. Keep lines under 100 characters. The formatter was adopted in 2023.

## Tests

Write a regression test for every bug fix. Tests should be fast.
"""


def test_summary_title_content_and_key_points() -> None:
    summary = summarize_text(GUIDE, "docs/guide.md")
    assert summary["title"] == "Team Guide"
    content = summary["content"]
    assert content
    assert len(content.split()) <= 120
    sentences = re.split(r"(?<=[.!?])\s+", content)
    flat = " ".join(GUIDE.split())
    assert all(s in flat for s in sentences)
    positions = [flat.index(s) for s in sentences]
    assert positions == sorted(positions)
    assert summary["key_points"] == [
        "Formatting: Format code with ruff.",
        "Tests: Write a regression test for every bug fix.",
    ]


def test_title_fallbacks() -> None:
    assert summarize_text("Some text.", "a/b/policy.md")["title"] == "policy"
    assert summarize_text("Some text.", "-")["title"] == "Untitled document"
    assert summarize_text("Some text.", "<stdin>")["title"] == "Untitled document"
    assert summarize_text("# A `title`\n\ntext", "x.md")["title"] == "A title"


def test_summary_never_empty_and_key_points_bounded() -> None:
    code_only = "```\nprint(1)\n```\n"
    s = summarize_text(code_only, "snippet.md")
    assert s["content"] and 1 <= len(s["key_points"]) <= 7
    long_doc = "\n\n".join(f"## Section {i}\n\nRun check number {i} daily." for i in range(12))
    s = summarize_text(long_doc)
    assert 1 <= len(s["key_points"]) <= 7
    assert len(s["content"].split()) <= 120
    one_long = summarize_text("Use " + "very " * 300 + "long sentences.")
    assert len(one_long["content"].split()) <= 120
    short = summarize_text("Keep it simple.")
    assert short["key_points"] == ["Keep it simple."]
    assert short["content"] == "Keep it simple."


def test_deterministic() -> None:
    doc = GUIDE * 5
    assert extract_checklist(doc) == extract_checklist(doc)
    assert summarize_text(doc) == summarize_text(doc)


# --- the engine contract -----------------------------------------------------------------------


def test_engine_async_methods() -> None:
    engine = LocalEngine()
    assert engine.source == "local_extractive"
    assert engine.model.startswith("avo-local-")
    assert engine.checkpoints is False
    assert engine.max_concurrency == 1
    assert engine.cache_key() is None
    doc = Document(event_id="e1", source="guide.md", text=GUIDE)

    async def run() -> tuple[object, object]:
        summary = await engine.summarize(doc)
        checklist = await engine.checklist(doc, summary.draft)
        await engine.aclose()
        return summary.draft, checklist.draft

    summary, checklist = asyncio.run(run())
    assert summary == summarize_text(GUIDE, "guide.md")
    assert checklist == extract_checklist(GUIDE, "guide.md")


def test_engine_runs_large_documents_off_the_event_loop() -> None:
    text = GUIDE * 200  # above the thread threshold
    doc = Document(event_id="e2", source="big.md", text=text)

    async def run() -> tuple[object, object]:
        engine = LocalEngine()
        summary = await engine.summarize(doc)
        checklist = await engine.checklist(doc, summary.draft)
        return summary.draft, checklist.draft

    summary, checklist = asyncio.run(run())
    assert summary == summarize_text(text, "big.md")
    assert checklist == extract_checklist(text, "big.md")
