"""The labelled evaluation set in bench/quality meets its quality targets (timing is the
bench script's business, never a unit test's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RUN = Path(__file__).resolve().parents[1] / "bench" / "quality" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("avo_quality_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quality_targets_hold() -> None:
    run = _load()
    result = run.evaluate(runs=1, timing=False)
    docs = result["documents"]
    assert len(docs) >= 4
    assert sum(d["rules"] for d in docs) >= 60
    overall = result["overall"]
    targets = result["targets"]
    details = {d["doc"]: (d["missed"], d["disagreed"], d["unlabelled_items"]) for d in docs}
    assert overall["recall"] >= targets["recall"], details
    assert overall["agreement"] >= targets["agreement"], details
    assert overall["sections"] >= targets["sections"], details
    assert overall["unlabelled"] <= targets["unlabelled"], details
    for d in docs:  # no document may hide far behind the average
        assert d["recall"] >= 0.75, (d["doc"], d["missed"])
        assert d["sections"] == 1.0, (d["doc"], d["missing_sections"])


def test_run_script_exit_code_reflects_quality_targets() -> None:
    run = _load()
    assert run.main(["--no-timing"]) == 0
