"""Sweeps: a chapter's grid planned, costed, then run locally or on a Dask cluster.

`python -m powerlaw_lib sweep GRID [--params FILE] [--set ...] [--scheduler ADDRESS | --local]
[--jobs N] [--dry-run]` (see `__main__`) is `plan` + `Plan.report` + `run_sweep`:

* the plan says, for each config of the grid, whether it is stored, only needs evaluating
  (its trained model is in the model cache) or must train, with its estimated CPU time
  and where the estimate comes from (`costs.estimate_seconds`: the stored runs' measured
  seconds per epoch, else `make bench`'s per-configuration costs);
* the run prints one status line per finished run: finished / running / failed / left and
  an estimated time to completion, the estimates rescaled by how the finished runs compared
  with theirs.

A chapter's papermill parameter file (``params/paper.yml``: chapter -> parameters) gives the
grid exactly the parameters the chapter would pass (`grid_parameters_from_file`).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import RunConfig, describe, varying_fields
from .costs import BENCH_RESULTS, Estimate, estimator
from .model_cache import ModelCache
from .store import ResultStore

#: The chapter parameter of a provisional preview from the stored runs only
#: (`experiments.chapter_results`); only the chapters of the longest grids have it.
PREVIEW_PARAMETER = "stored_only"

#: Chapter parameters that are not the grid's: where results go, whether the chapter may
#: train, the Dask scheduler it runs missing configs on, and the preview switch.
CHAPTER_ONLY_PARAMETERS = frozenset({"results_dir", "allow_training", "scheduler", PREVIEW_PARAMETER})


def grid_parameters_from_file(path: str | Path, grid_name: str, grid_fn: Callable
                              ) -> tuple[dict[str, Any], str | None]:
    """The grid keyword arguments in a chapter parameter file, and the results folder it names.

    The file maps chapter names to the parameters that differ from the chapter's parameters
    cell (whose defaults are the grid function's, a tested rule). Chapter-only parameters
    are left out; a `results_dir` that is a placeholder ("@fresh_tmpdir") is ignored. Any
    other name the grid function does not take is an error naming it.
    """
    import yaml

    text = Path(path).read_text()
    sections = yaml.safe_load(text) or {}
    if not isinstance(sections, dict):
        raise ValueError(f"{path}: expected a mapping of chapter names to parameters")
    section = sections.get(grid_name) or {}
    accepted = inspect.signature(grid_fn).parameters
    unknown = sorted(set(section) - set(accepted) - CHAPTER_ONLY_PARAMETERS
                     - set(audit_parameters(grid_name)))
    if unknown:
        raise ValueError(f"{path}, section {grid_name!r}: unknown parameter(s) {unknown}; "
                         f"the grid takes {', '.join(accepted)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in section.items()
              if k in accepted}
    results = section.get("results_dir")
    if isinstance(results, str) and results.startswith("@"):
        results = None
    return kwargs, results


def audit_parameters(chapter: str) -> tuple[str, ...]:
    """Keyword parameters of a chapter's audits (`grids.CHAPTER_AUDITS`); () without audits."""
    from .grids import CHAPTER_AUDITS

    fn = CHAPTER_AUDITS.get(chapter)
    if fn is None:
        return ()
    return tuple(n for n, p in inspect.signature(fn).parameters.items()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    action: str          # "stored" | "evaluate" (model cached) | "train"
    estimate: Estimate   # of what is left to do: nothing, evaluation, or training + evaluation

    @property
    def seconds(self) -> float:
        if self.action == "stored":
            return 0.0
        return self.estimate.evaluate_seconds if self.action == "evaluate" else self.estimate.seconds


@dataclass(frozen=True)
class Plan:
    runs: list[PlannedRun]

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.action != "stored"]

    @property
    def known_seconds(self) -> float:
        return sum(r.seconds for r in self.todo if r.estimate.known)

    @property
    def unknown(self) -> int:
        return sum(not r.estimate.known for r in self.todo)

    def report(self, print_fn: Callable[[str], None] = print) -> None:
        """What is stored, what will run, and its estimated CPU time per run and in total."""
        counts = {a: sum(r.action == a for r in self.runs) for a in ("stored", "evaluate", "train")}
        print_fn(f"{len(self.runs)} runs: {counts['stored']} stored, {counts['evaluate']} to "
                 f"evaluate from cached models, {counts['train']} to train")
        varying = varying_fields([r.config for r in self.runs])
        for r in self.todo:
            cost = (f"{r.seconds / 3600:6.2f} h" if r.estimate.known else "     ? h")
            source = r.estimate.source if r.estimate.known else "no estimate"
            print_fn(f"  {r.action:8s} {r.config.key}  {cost}  ({source})  "
                     f"{describe(r.config, varying)}")
        sources = sorted({r.estimate.source.split(" (")[0] for r in self.todo if r.estimate.known})
        if self.todo:
            print_fn(f"estimated CPU time: {self.known_seconds / 3600:.2f} h"
                     + (f" + {self.unknown} run(s) without an estimate" if self.unknown else "")
                     + (f"; from {' and '.join(sources)} (stored runs: their measured seconds "
                        "per epoch; benchmark: `make bench` costs)" if sources else
                        "; no run has an estimate: store a run of each kind or run `make bench`"))


def plan(configs: Sequence[RunConfig], store: ResultStore, *,
         bench: Path | None = BENCH_RESULTS) -> Plan:
    """For each config: stored, to evaluate (cached model) or to train, with its estimate."""
    estimate = estimator(store, bench=bench)
    cache = ModelCache(store.models_path)
    runs = []
    for c in configs:
        action = "stored" if c in store else ("evaluate" if c in cache else "train")
        runs.append(PlannedRun(c, action, estimate(c)))
    return Plan(runs)


class Progress:
    """One line per finished run: finished / running / failed / left, elapsed and ETA.

    The ETA is the estimated seconds of the runs left, divided by the executor's
    parallelism, times the ratio of the finished runs' wall time to their estimates (1
    until a run with an estimate has finished).
    """

    def __init__(self, planned: Sequence[PlannedRun], parallelism: int,
                 print_fn: Callable[[str], None] = print) -> None:
        self.left = {r.config.key: r for r in planned}
        self.parallelism = max(1, parallelism)
        self.finished = 0
        self.failed = 0
        self.estimated_done = 0.0
        self.start = time.perf_counter()
        self.print = print_fn

    def on_done(self, config: RunConfig, error: str | None) -> None:
        run = self.left.pop(config.key, None)
        if error:
            self.failed += 1
        else:
            self.finished += 1
        if run is not None and run.estimate.known:
            self.estimated_done += run.seconds
        self.print(self.line(config, error))

    def line(self, config: RunConfig, error: str | None) -> str:
        elapsed = time.perf_counter() - self.start
        running = min(self.parallelism, len(self.left))
        rest = sum(r.seconds for r in self.left.values() if r.estimate.known)
        scale = elapsed / self.estimated_done * self.parallelism if self.estimated_done else 1.0
        eta = rest / self.parallelism * scale
        what = f"FAILED {config.label}: {error}" if error else f"done {config.label}"
        return (f"[{_hms(elapsed)}] finished {self.finished} · running {running} · failed "
                f"{self.failed} · left {len(self.left)} · ETA {_hms(eta)}   {what}")


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_sweep(the_plan: Plan, store: ResultStore, executor: Any = None,
              print_fn: Callable[[str], None] = print, progress: bool = False) -> int:
    """Run what `the_plan` says is missing; 0 when everything finished, 1 when runs failed,
    130 when interrupted (the store stays consistent; the next sweep resumes)."""
    from .executors import as_executor
    from .experiments import GridRunError, run_grid

    todo = [r.config for r in the_plan.todo]
    if not todo:
        print_fn("nothing to run: every config is stored")
        return 0
    runner = as_executor(executor, progress)
    tracker = Progress(the_plan.todo, runner.parallelism, print_fn)
    try:
        run_grid(todo, store, executor=runner, progress=progress, on_done=tracker.on_done)
    except GridRunError as err:
        print_fn(str(err))
        return 1
    except KeyboardInterrupt:
        print_fn(f"interrupted: {tracker.finished} run(s) finished and stored; the store is "
                 "consistent (results and per-epoch checkpoints are written atomically); run "
                 "the same command again to resume")
        return 130
    print_fn(f"all {len(todo)} run(s) finished in {_hms(time.perf_counter() - tracker.start)}")
    return 0
