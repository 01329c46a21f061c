"""Guard the start-up path: what ``avo submit`` and ``avo status`` import.

Each case runs the real CLI in a subprocess with stdout piped, then writes
``sorted(sys.modules)`` to a file; heavy or irrelevant modules on that list
are start-up time every script and CI job pays (bench/cold_start.py has the
figures). pydantic is on the list because typer 0.29 would import it for
every parameter; avo_cli.fastparams keeps it off this path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DUMP = """
import json, os, sys
sys.argv = ["avo", *sys.argv[1:]]
out = os.environ["AVO_MODULES_OUT"]
code = 0
try:
    from avo_cli.cli import main
    main()
except SystemExit as exc:
    code = exc.code
finally:
    with open(out, "w") as fh:
        json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""

FORBIDDEN = {
    "openai": "the OpenAI client is for avo work only",
    "httpx2": "no network on submit/status",
    "rich": "rich is for terminals; stdout is piped here",
    "sqlite_utils": "migrations only; the database is up to date",
    "avo_cli.schema": "pydantic models of the job contract are not needed to print it",
    "pydantic": "typer's pydantic coercion should be skipped (avo_cli.fastparams)",
    "avo_cli.engines.local": "engines are for avo work only",
    "asyncio": "only the worker is asynchronous",
}


def modules_of(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.json"
    env = {**os.environ, "AVO_MODULES_OUT": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", DUMP, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    data = json.loads(out.read_text())
    assert data["code"] in (0, None), proc.stderr
    return set(data["modules"])


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


@pytest.fixture
def job(tmp_path: Path, run_avo) -> str:  # type: ignore[no-untyped-def]
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n- You must test.\n", encoding="utf-8")
    proc = run_avo("submit", str(doc), check=True)  # creates and migrates the database
    return proc.stdout.strip()


@pytest.mark.parametrize("command", ["submit", "status"])
def test_start_up_path_stays_light(command: str, tmp_path: Path, job: str) -> None:
    if command == "submit":
        doc = tmp_path / "second.md"
        doc.write_text("# Second\n- Keep it short.\n", encoding="utf-8")
        modules = modules_of(tmp_path, "submit", str(doc))
    else:
        modules = modules_of(tmp_path, "status", job, "--json")
    assert "avo_cli.cli" in modules and "sqlite3" in modules  # the dump really ran the CLI
    found = {name: why for name, why in FORBIDDEN.items() if loaded(modules, name)}
    assert not found, f"avo {command} imported: {found}"


def test_dump_sees_heavy_imports(tmp_path: Path) -> None:
    """The guard can fail: a command that needs sqlite_utils shows it on the list."""
    db = tmp_path / "fresh.db"
    doc = tmp_path / "guide.md"
    doc.write_text("# Guide\n- You must test.\n", encoding="utf-8")
    # A missing database is created and migrated: sqlite-utils does the DDL.
    modules = modules_of(tmp_path, "submit", str(doc), "--db", str(db))
    assert loaded(modules, "sqlite_utils")


def test_offline_worker_skips_pydantic_and_openai(tmp_path: Path, job: str) -> None:
    """``avo work --engine local`` needs neither the OpenAI client nor pydantic."""
    modules = modules_of(tmp_path, "-q", "work", "--engine", "local")
    assert "avo_cli.engines.local" in modules
    found = {m for m in ("openai", "httpx2", "pydantic", "rich") if loaded(modules, m)}
    assert not found, f"avo work --engine local imported: {found}"


@pytest.mark.parametrize(
    "args",
    [
        ["work", "--concurrency", "0"],
        ["work", "--grace", "-1"],
        ["work", "--lease", "abc"],
        ["status", "abc", "--timeout", "-1"],
        ["list", "--limit", "0"],
        ["list", "--limit", "x"],
    ],
)
def test_bounds_still_checked_without_pydantic_shortcut(args: list[str], run_avo) -> None:  # type: ignore[no-untyped-def]
    """Values given on the command line still go through typer's own validation."""
    proc = run_avo(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Invalid value" in proc.stderr
