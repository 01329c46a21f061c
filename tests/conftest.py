"""Shared fixtures: every test gets its own user dirs and database.

``run_avo`` runs the real CLI in a subprocess (``python -m avo_cli``) with the
test's environment; ``cli`` runs it in-process through typer's runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from avo_cli.engines.base import Document, StageResult, SummaryDraft

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

_SCRUB = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AVO_ENGINE",
    "AVO_MODEL",
    "AVO_DB",
    "AVO_LANG",
    "AVO_OUTPUT_LANG",
    "AVO_CONCURRENCY",
    "AVO_LEASE",
    "AVO_MAX_ATTEMPTS",
    "AVO_MAX_BYTES",
    "AVO_TIMEOUT",
    "AVO_CONTEXT_TOKENS",
    "AVO_CACHE",
    "AVO_CONFIG",
    "AVO_RAISE_ERRORS",
    "AVO_API_TOKEN",
    "NO_COLOR",
    "FORCE_COLOR",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point avo's data/config dirs and database into the test's tmp dir."""
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    db = tmp_path / "avo.db"
    monkeypatch.setenv("AVO_DB", str(db))
    return db


@pytest.fixture
def db_path(isolated: Path) -> Path:
    return isolated


def avo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "avo_cli", *args]


RunAvo = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_avo() -> RunAvo:
    """Run the real CLI; ``env`` adds to (or with None values removes from) os.environ."""

    def run(
        *args: str,
        input: str | bytes | None = None,
        env: dict[str, str | None] | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        text_input = input.decode("utf-8", "surrogateescape") if isinstance(input, bytes) else input
        proc = subprocess.run(
            avo_cmd(*args),
            input=text_input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"avo {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    return run


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Invoke the typer app in-process; returns click's Result."""
    from avo_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    return invoke


@pytest.fixture
def doc(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a document into the tmp dir and return its path."""

    def write(text: str, name: str = "guide.md") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def submit_ids(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def status_json(run: RunAvo, event_id: str, *extra: str) -> dict[str, Any]:
    proc = run("status", event_id, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.fixture
def sample_docs() -> Iterator[list[Path]]:
    yield sorted((EXAMPLES / "guidelines").glob("*.md"))


class StubEngine:
    """An engine for worker and chain tests: records its calls, asks no model."""

    source = model = "t"
    checkpoints = True
    max_concurrency: int | None = 1
    marks_requests = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    def cache_key(self) -> None:
        return None

    def checklist_without_summary(self, doc: Document) -> bool:
        return False

    async def summarize(self, doc: Document) -> StageResult:
        self.calls.append("summary")
        return StageResult({"title": "t", "content": "c", "key_points": ["k"]})

    async def checklist(self, doc: Document, summary: SummaryDraft | None) -> StageResult:
        self.calls.append("checklist")
        return StageResult({"categories": []})

    async def aclose(self) -> None:
        pass
