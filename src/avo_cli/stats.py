"""``avo stats``: what the queue holds and what its model calls cost, in total.

Token counts come from each job's recorded usage (``usage.total``); cost from
``avo_cli.pricing``. Models without a known price are listed as unpriced and
left out of the dollar total, which then says it is partial: unknown is not $0.
"""

from __future__ import annotations

from typing import Any

from avo_cli.jobview import usage_totals
from avo_cli.store.base import Counts, Store


def collect(store: Store | None) -> dict[str, Any]:
    """Totals over ``store``; ``None`` (no database yet) gives all zeros."""
    from avo_cli.pricing import cost

    counts = store.counts() if store is not None else Counts()
    models: dict[str, dict[str, Any]] = {}
    for model, usage in store.usage_rows() if store is not None else []:
        totals = usage_totals(usage)
        if totals is None or not totals[2]:
            continue  # offline engine or a reused result: no model calls
        name = model or "unknown"
        entry = models.setdefault(
            name, {"model": name, "jobs": 0, "prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
        )
        entry["jobs"] += 1
        entry["prompt_tokens"] += totals[0]
        entry["completion_tokens"] += totals[1]
        entry["calls"] += totals[2]
    priced = 0.0
    unpriced = []
    for entry in models.values():
        price = cost(entry["model"], entry["prompt_tokens"], entry["completion_tokens"])
        entry["cost_usd"] = None if price is None else round(price, 6)
        if price is None:
            unpriced.append(entry["model"])
        else:
            priced += price
    jobs = {
        status: getattr(counts, status)
        for status in ("pending", "processing", "completed", "failed", "cancelled")
    }
    return {
        "jobs": {**jobs, "total": sum(jobs.values())},
        "tokens": {
            "prompt_tokens": sum(m["prompt_tokens"] for m in models.values()),
            "completion_tokens": sum(m["completion_tokens"] for m in models.values()),
            "calls": sum(m["calls"] for m in models.values()),
        },
        "cost_usd": round(priced, 6),
        "cost_complete": not unpriced,
        "unpriced_models": sorted(unpriced),
        "models": sorted(models.values(), key=lambda m: m["model"]),
    }


def lines(stats: dict[str, Any]) -> list[str]:
    """The human view: a few aligned lines (stdout is a terminal)."""
    jobs = stats["jobs"]
    out = [
        "jobs: "
        + ", ".join(
            f"{jobs[s]} {s}" for s in ("pending", "processing", "completed", "failed", "cancelled")
        )
        + f" ({jobs['total']} in all)",
    ]
    tokens = stats["tokens"]
    if not tokens["calls"]:
        out.append("tokens: none (no model calls recorded)")
        return out
    out.append(
        f"tokens: {tokens['prompt_tokens']:,} in / {tokens['completion_tokens']:,} out "
        f"({tokens['calls']:,} calls)"
    )
    cost = f"cost: ${stats['cost_usd']:.4f}"
    if not stats["cost_complete"]:
        cost += " + unpriced (" + ", ".join(stats["unpriced_models"]) + ")"
    out.append(cost)
    for m in stats["models"]:
        price = "unpriced" if m["cost_usd"] is None else f"${m['cost_usd']:.4f}"
        out.append(
            f"  {m['model']}: {m['jobs']} jobs, {m['prompt_tokens']:,} in / "
            f"{m['completion_tokens']:,} out, {price}"
        )
    return out
