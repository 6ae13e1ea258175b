"""Cost model: the CPU time a run will take, known before it starts.

Two sources, in this order of preference:

1. **Stored runs of the same cost class** (`cost_class`: everything that changes the
   time per epoch -- data, model, method and its layers, batch, precision -- but not the
   seed, α, β, τ, learning rate or optimizer): the median over those runs of their
   unloaded seconds per epoch (`unloaded_epoch_seconds`) times the epochs asked for, plus
   the median of their evaluation seconds. These
   are real runs of this code, on whichever machine ran them.
2. **`make bench`** (`benchmarks/results.json`, section ``costs``): per cost class of the
   chapters' grids, seconds per training step, per refresh and per evaluation, each also
   as a multiple of a float32 GEMM timed in the same rounds. The estimate rescales the
   multiples by this machine's GEMM time when it is given (`gemm_seconds`), else uses the
   seconds as measured.

Without either, `estimate_seconds` says so (source "none", seconds NaN): an honest gap
rather than a guess.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .config import TRAIN_SIZES, RunConfig
from .store import ResultStore

__all__ = ["Estimate", "cost_class", "estimate_seconds", "estimator", "grid_estimate", "BENCH_RESULTS",
           "steps_per_epoch",
           "CHAPTER_BUDGET_HOURS", "GridSummary", "budget_texts", "budget_verdict", "grid_hours", "grid_summary",
           "store_cost_table"]

BENCH_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.json"
#: CPU-hours of this machine that a chapter's grid should take (the deep chapter and the α sweep).
CHAPTER_BUDGET_HOURS = 12.0
#: Training fields that do not change the cost of an epoch.
_COST_NEUTRAL = frozenset({"seed", "alpha", "layer_alphas", "beta", "tau", "lr", "optimizer",
                           "epochs", "slope_ranks", "local_epochs"})


def cost_class(config: RunConfig) -> str:
    """The training fields that set the seconds per epoch, as canonical JSON."""
    d = {k: v for k, v in config.training_dict().items() if k not in _COST_NEUTRAL}
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Estimate:
    """Estimated CPU seconds of one run (training + evaluation) and where it came from."""

    seconds: float
    epoch_seconds: float
    evaluate_seconds: float
    source: str  # "stored runs (n=3)", "benchmark", or "none"

    @property
    def known(self) -> bool:
        return math.isfinite(self.seconds)


def unloaded_epoch_seconds(history: list[dict[str, float]], phase: str = "main") -> float | None:
    """A run's seconds per epoch without background load: the 10th percentile of its epochs.

    Other work on the machine only ever slows an epoch down, so the fast epochs are the
    run's own cost; the median would carry whatever else ran at the time. `phase`:
    "main" for the epochs that `RunConfig.epochs` counts (a local-learning run's readout),
    "local" for a local-learning run's epochs of the local rule.
    """
    epochs = sorted(h["seconds"] for h in history if "seconds" in h
                    and (h.get("phase") == "local") == (phase == "local"))
    return epochs[len(epochs) // 10] if epochs else None


def _stored_index(store: ResultStore) -> dict[str, list[tuple[float, float, float]]]:
    """cost class -> [(unloaded seconds per epoch, evaluation seconds, unloaded seconds per
    epoch of the local rule (0 for backpropagation runs))] of stored runs."""
    index: dict[str, list[tuple[float, float, float]]] = {}
    for r in store:
        epoch = unloaded_epoch_seconds(r.history)
        local = unloaded_epoch_seconds(r.history, "local") or 0.0
        ev = r.provenance.get("seconds", {}).get("evaluate")
        if epoch is not None and ev is not None:
            index.setdefault(cost_class(r.config), []).append((epoch, ev, local))
    return index


def cost_label(config: RunConfig) -> str:
    """A config's label without what does not change its cost (seed, α, β, τ, lr)."""
    layers = f" layers={list(config.reg_layers)}" if config.reg_layers else ""
    return (f"{config.dataset} {config.arch_label} {config.method.label}{layers} "
            f"batch {config.batch_size}")


def bench_results(path: Path = BENCH_RESULTS) -> dict:
    """The last `make bench` results (`benchmarks/results.json`); {} when there are none."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _bench_costs(path: Path) -> dict[str, dict]:
    return bench_results(path).get("costs", {})


def steps_per_epoch(config: RunConfig) -> int:
    """Optimizer steps in one epoch of ``config``: training images // batch size (at least 1)."""
    n = config.train_subset or TRAIN_SIZES[config.dataset]
    return max(1, n // config.batch_size)


def estimate_seconds(config: RunConfig, store: ResultStore | None = None, *,
                     bench: Path | None = BENCH_RESULTS, gemm_seconds: float | None = None,
                     _index: dict | None = None, _costs: dict | None = None) -> Estimate:
    """Estimated seconds of `config` (see the module docstring for the sources)."""
    index = _index if _index is not None else (_stored_index(store) if store else {})
    runs = index.get(cost_class(config))
    if runs:
        epoch = statistics.median(e for e, _, _ in runs)
        ev = statistics.median(v for _, v, _ in runs)
        local = statistics.median(l for _, _, l in runs) if config.arch == "kh" else 0.0
        return Estimate(epoch * config.epochs + local * config.local_epochs + ev, epoch, ev,
                        f"stored runs (n={len(runs)})")
    costs = _costs if _costs is not None else (_bench_costs(bench) if bench else {})
    entry = costs.get(cost_class(config))
    if entry:
        def seconds(name: str) -> float:
            if gemm_seconds is not None:
                return entry[f"{name}_gemm_units"] * gemm_seconds
            return entry[f"{name}_seconds"]
        epoch = seconds("step") * steps_per_epoch(config) + seconds("refresh")
        ev = seconds("evaluate")
        return Estimate(epoch * config.epochs + ev, epoch, ev, "benchmark")
    nan = float("nan")
    return Estimate(nan, nan, nan, "none")


def estimator(store: ResultStore | None, *, bench: Path | None = BENCH_RESULTS
              ) -> Callable[[RunConfig], Estimate]:
    """`estimate_seconds` with the store and the bench results read once, for many configs."""
    index = _stored_index(store) if store else {}
    costs = _bench_costs(bench) if bench else {}
    return lambda config: estimate_seconds(config, _index=index, _costs=costs)


def grid_estimate(configs: Iterable[RunConfig], store: ResultStore, *,
                  bench: Path | None = BENCH_RESULTS) -> tuple[list[Estimate], float, int]:
    """Estimates of `configs`, their total over the known ones, and how many are unknown."""
    estimate = estimator(store, bench=bench)
    estimates = [estimate(c) for c in configs]
    known = [e.seconds for e in estimates if e.known]
    return estimates, float(sum(known)), len(estimates) - len(known)


def grid_hours(configs: Iterable[RunConfig], store: ResultStore, *,
               bench: Path | None = BENCH_RESULTS) -> float:
    """Estimated CPU-hours of a whole grid, stored runs included (`estimate_seconds` for
    each: from the stored runs of its cost class where there are any, else `make bench`);
    NaN when a config has no estimate."""
    _, total, unknown = grid_estimate(configs, store, bench=bench)
    return float("nan") if unknown else total / 3600


def budget_verdict(hours: float, budget_hours: float = CHAPTER_BUDGET_HOURS) -> str:
    """Words for a chapter: is `hours` within `budget_hours` ("within"), beyond it
    ("above") or unknown (NaN: "not yet known against")?"""
    if math.isnan(hours):
        return "not yet known against"
    return "within" if hours <= budget_hours else "above"


def budget_texts(configs: Iterable[RunConfig], store: ResultStore, *,
                 bench: Path | None = BENCH_RESULTS,
                 budget_hours: float = CHAPTER_BUDGET_HOURS) -> dict[str, str]:
    """A chapter's cost sentence as glue values: ``grid_hours`` (`grid_hours`, one
    decimal; "nan" when unknown), ``budget_verdict`` (`budget_verdict`) and
    ``budget_hours``."""
    hours = grid_hours(configs, store, bench=bench)
    return {"grid_hours": f"{hours:.1f}", "budget_verdict": budget_verdict(hours, budget_hours),
            "budget_hours": f"{budget_hours:g}"}


@dataclass(frozen=True)
class GridSummary:
    """How far a chapter grid is: stored, missing and failed runs, and CPU time."""

    name: str
    runs: int
    stored: int
    failed: int
    spent_hours: float      # training + evaluation seconds of its stored runs
    missing_hours: float    # estimate for the missing runs with an estimate
    unknown: int            # missing runs without an estimate


def grid_summary(name: str, configs: list[RunConfig], store: ResultStore) -> GridSummary:
    """Progress of one grid in `store`."""
    missing = store.missing(configs)
    spent = 0.0
    for c in configs:
        r = store.get(c) if c not in missing else None
        if r is not None:
            sec = r.provenance.get("seconds", {})
            spent += sec.get("train_total", 0.0) + sec.get("evaluate", 0.0)
    _, total, unknown = grid_estimate(missing, store)
    failed = sum(store.failure(c) is not None for c in missing)
    return GridSummary(name, len(configs), len(configs) - len(missing), failed, spent / 3600,
                       total / 3600, unknown)


def store_cost_table(store: ResultStore) -> list[tuple[str, int, float, float]]:
    """Per cost class of the stored runs: (label, runs, unloaded s/epoch, eval s), medians."""
    rows: dict[str, list] = {}
    for r in store:
        epoch = unloaded_epoch_seconds(r.history)
        ev = r.provenance.get("seconds", {}).get("evaluate")
        if epoch is not None and ev is not None:
            row = rows.setdefault(cost_class(r.config), [cost_label(r.config), [], []])
            row[1].append(epoch)
            row[2].append(ev)
    return [(label, len(e), statistics.median(e), statistics.median(v))
            for label, e, v in rows.values()]
