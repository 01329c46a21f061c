"""Property-based tests: hostile submit input and hostile model answers.

Whatever the bytes or the JSON, avo answers with a documented exit code and
never a traceback; a rejected document writes nothing; a model answer of any
shape ends its job in a defined status.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

import reliability_report
from avo_cli.chain import build_checklist, normalise_summary
from avo_cli.documents import validate
from avo_cli.errors import BadInput, ExitCode, PermanentJobError
from fake_openai import FakeOpenAI, Reply
from reliability_report import Figures, jobs_by_status, run

reliability = reliability_report.reliability  # the fixture that tallies the figures

EXIT_CODES = {int(c) for c in ExitCode}
FIXTURE_OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)

# Text that looks like a document some of the time and like garbage the rest.
doc_bytes = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=2048).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.text(alphabet=st.sampled_from("# -\n\t\x00\x1b[]/가나\ufeff\u202eab"), max_size=300).map(
        lambda s: s.encode("utf-8")
    ),
    st.just(b"\xef\xbb\xbf"),
    st.just(b"\xef\xbb\xbf   \n"),
)


@given(data=doc_bytes, max_bytes=st.integers(min_value=1, max_value=4096))
def test_validate_accepts_or_rejects_cleanly(data: bytes, max_bytes: int) -> None:
    try:
        job = validate(data, "fuzz.md", max_bytes)
    except BadInput as exc:
        assert exc.exit_code == ExitCode.BAD_INPUT
        assert "\n" not in exc.message and exc.message.startswith("fuzz.md: ")
        return
    assert len(data) <= max_bytes and b"\x00" not in data
    assert job.text.strip() and job.size == len(data)
    assert job.text == data.decode("utf-8").removeprefix("\ufeff")


def count_jobs(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    except sqlite3.OperationalError:  # created but not migrated yet
        return 0
    finally:
        conn.close()


@settings(FIXTURE_OK, max_examples=60)
@given(data=doc_bytes)
def test_submit_stdin_through_the_cli(
    cli: Any, isolated: Path, reliability: Figures, data: bytes
) -> None:
    before = count_jobs(isolated)
    result = cli("submit", "-", input=data)
    reliability.bad_inputs += 1
    assert result.exit_code in (0, int(ExitCode.BAD_INPUT)), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    after = count_jobs(isolated)
    if result.exit_code == 0:
        assert after == before + 1
    else:
        assert after == before  # nothing written on rejection
        assert "avo: error: <stdin>: " in result.output


@settings(FIXTURE_OK, max_examples=60)
@given(
    command=st.sampled_from(["status", "cancel", "retry", "watch", "export"]),
    ref=st.text(max_size=60).filter(lambda s: not s.startswith("-")),
)
def test_any_job_reference_gets_a_documented_answer(
    cli: Any, isolated: Path, reliability: Figures, command: str, ref: str
) -> None:
    result = cli(command, ref)
    reliability.bad_inputs += 1
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.output)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )


@pytest.mark.slow
@settings(FIXTURE_OK, max_examples=12)
@given(
    data=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=3),
    names=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
            min_size=1,
            max_size=20,
        ),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_submit_files_in_a_real_process(
    tmp_path_factory: pytest.TempPathFactory,
    isolated: Path,
    reliability: Figures,
    data: list[bytes],
    names: list[str],
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    paths = []
    for name, blob in zip(names, data, strict=False):
        if name in (".", ".."):
            continue
        path = folder / name
        path.write_bytes(blob)
        paths.append(str(path))
    if not paths:
        return
    before = count_jobs(isolated)
    proc = run("submit", "--", *paths)
    reliability.bad_inputs += 1
    assert proc.returncode in (0, int(ExitCode.BAD_INPUT)), proc.stderr
    assert "Traceback" not in proc.stderr
    after = count_jobs(isolated)
    if proc.returncode == 0:
        assert after == before + len(paths) and len(proc.stdout.split()) == len(paths)
    else:
        assert after == before and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("avo: error: ")


# --- model answers --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
item = st.fixed_dictionaries(
    {}, optional={"text": json_values | st.text(max_size=30), "required": json_values}
)
category = st.fixed_dictionaries(
    {}, optional={"name": json_values | st.text(max_size=20), "items": st.lists(item, max_size=4)}
)
checklist_like = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"categories": st.lists(category, max_size=4)}),
    st.fixed_dictionaries({"categories": json_values}),
)
summary_like = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "title": json_values | st.text(max_size=20),
            "content": json_values | st.text(max_size=80),
            "key_points": st.lists(json_values | st.text(max_size=20), max_size=8) | json_values,
        },
    ),
)


class _Engine:
    source = "fuzz"
    model = "fuzz-model"


@given(draft=checklist_like)
def test_build_checklist_keeps_the_contract_or_refuses(draft: Any) -> None:
    try:
        out = build_checklist(draft, _Engine())  # type: ignore[arg-type]
    except PermanentJobError:
        return
    ids = [i["id"] for c in out["categories"] for i in c["items"]]
    assert ids == list(range(1, len(ids) + 1))
    assert out["total_items"] == len(ids)
    assert out["required_items"] == sum(
        i["required"] for c in out["categories"] for i in c["items"]
    )
    for cat in out["categories"]:
        assert isinstance(cat["name"], str) and cat["name"] and cat["items"]
        for i in cat["items"]:
            assert isinstance(i["text"], str) and i["text"] and isinstance(i["required"], bool)
    json.dumps(out)


@given(draft=summary_like)
def test_normalise_summary_keeps_the_contract_or_refuses(draft: Any) -> None:
    try:
        out = normalise_summary(draft)
    except PermanentJobError:
        return
    assert isinstance(out["title"], str) and isinstance(out["content"], str) and out["content"]
    assert out["key_points"] and all(isinstance(p, str) and p for p in out["key_points"])
    assert len(out["key_points"]) <= 7


@pytest.mark.slow
@settings(FIXTURE_OK, max_examples=3)
@given(
    answers=st.lists(
        st.one_of(
            summary_like.map(lambda v: json.dumps(v)),
            checklist_like.map(lambda v: json.dumps(v)),
            st.text(max_size=200),
        ),
        min_size=12,
        max_size=12,
    )
)
def test_random_model_answers_end_every_job_in_a_defined_status(
    tmp_path_factory: pytest.TempPathFactory,
    isolated: Path,
    reliability: Figures,
    answers: list[str],
) -> None:
    folder = tmp_path_factory.mktemp("answers")
    docs = reliability_report.write_docs(folder, 4, "a")
    ids = reliability_report.submit(docs)
    with FakeOpenAI() as fake:
        fake.push(*(Reply(kind="content", content=a) for a in answers))
        proc = run(
            "work",
            "--engine",
            "openai",
            "--base-url",
            fake.url,
            "--max-attempts",
            "1",
            "--no-cache",
            env={"OPENAI_API_KEY": "sk-fuzz"},
        )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    statuses = {reliability_report.job(isolated, e)["status"] for e in ids}
    assert statuses <= {"completed", "failed"}, statuses
    for e in ids:
        row = reliability_report.job(isolated, e)
        if row["status"] == "failed":
            assert row["error"] and "\n" not in row["error"]
        else:
            json.loads(row["result"])
    reliability.bad_inputs += len(answers)
    reliability_report.account(isolated, ids, reliability)
    assert "processing" not in jobs_by_status(isolated)
