"""Command line: `python -m powerlaw_lib COMMAND [GRID] [--set name=value ...]`.

  list          the chapters' grids: runs stored / missing / failed
  status        the whole store: every grid's progress, CPU time spent and still needed,
                and the measured seconds per epoch of each kind of run
  status GRID   how many runs of a chapter's grid are stored / missing, with the
                estimated CPU time of each missing run
  run GRID      run the missing configs of the grid (resuming interrupted ones)
  sweep GRID    plan the grid (stored / to evaluate / to train, estimated CPU time per run
                and in total), then run it locally (--local, --jobs N) or on a Dask
                cluster (--scheduler ADDRESS) with a live count and ETA; --dry-run only
                plans; --params FILE takes a chapter's papermill parameter file
  evaluate GRID like run, for new evaluation settings (--set pgd_subset=5000 ...): configs
                whose trained model is in the model cache (data/models/) are evaluated
                without training; the others are retrained deterministically, and a
                retrained model must reproduce the stored training history (losses
                to a relative 1e-6, accuracies to 1e-4)
                (--cached-only skips them instead; --replace replaces a stored
                training that does not reproduce, as `retrain` does)
  retrain GRID  give every stored run of the grid a cached model (for `evaluate` and
                `audit`): a run whose model is not cached is trained anew; when the new
                training does not reproduce the stored history (SpecReg on another CPU),
                the stored results of that training are moved to the store's
                superseded/ folder and the run is evaluated anew on the new model
  show GRID     one line per run of the grid with its key and headline metrics
  claims GRID   the papers' claims the chapter judges (deep, alpha_sweep), with their
                verdicts and numbers, on the grid's stored runs; provisional (and marked
                so) while runs are missing
  audit GRID    run the chapter's missing audits (`grids.CHAPTER_AUDITS`, their default
                settings) on the cached models of its stored runs, retraining a model
                deterministically only when it is not cached; each audit is stored.
                The audit chapter's own grid is `audit`: `run audit` trains its runs
                (the PGD adversarial-training yardstick), `audit audit` attacks them

GRID is a chapter name from `powerlaw_lib.grids.CHAPTER_GRIDS`; `--set` overrides one of the
grid function's keyword parameters (Python literal syntax: --set seeds=[0] --set epochs=2),
after those of --params.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys

from .config import describe, varying_fields
from .grids import CHAPTER_AUDITS, CHAPTER_GRIDS
from .store import ResultStore


def _parse_overrides(grid_fn, pairs: list[str]) -> dict:
    params = inspect.signature(grid_fn).parameters
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects name=value, got {pair!r}")
        if name not in params:
            raise SystemExit(f"unknown parameter {name!r} for this grid; "
                             f"allowed: {', '.join(params)}")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text  # plain strings such as precision=bf16
    return out


def _summary(store: ResultStore, detailed: bool) -> int:
    """Every chapter grid's progress in `store` (and, detailed, what the store holds)."""
    from .audits import AuditStore
    from .costs import grid_summary, store_cost_table

    audits = AuditStore(store.audits_path, store)
    print(f"{'grid':14s} {'runs':>5s} {'stored':>7s} {'missing':>8s} {'failed':>7s} {'audits':>7s}"
          + (f" {'CPU h spent':>12s} {'CPU h to go':>12s}" if detailed else ""))
    for name, fn in CHAPTER_GRIDS.items():
        configs = fn()
        g = grid_summary(name, configs, store)
        pairs = _audit_pairs(name, configs, {}) if name in CHAPTER_AUDITS else []
        done = sum(audits.get(c, s) is not None for c, s in pairs)
        audit_text = f"{done}/{len(pairs)}" if pairs else "-"
        line = (f"{name:14s} {g.runs:5d} {g.stored:7d} {g.runs - g.stored:8d} {g.failed:7d} "
                f"{audit_text:>7s}")
        if detailed:
            to_go = f"{g.missing_hours:.1f}" + (f" (+{g.unknown} ?)" if g.unknown else "")
            line += f" {g.spent_hours:12.1f} {to_go:>12s}"
        print(line)
    if detailed:
        print(f"\n{len(store)} result(s) in {store.path}; measured cost per kind of run "
              "(medians):")
        for label, n, epoch, ev in sorted(store_cost_table(store)):
            print(f"  {epoch:7.1f} s/epoch  {ev:6.0f} s evaluation  ({n} run(s))  {label}")
    return 0


def _executor(args: argparse.Namespace):
    """The executor the options ask for: a Dask scheduler, or this machine (--jobs)."""
    from .executors import DaskExecutor, LocalExecutor

    if args.scheduler:
        return DaskExecutor(args.scheduler)
    return LocalExecutor(progress=args.jobs == 1, jobs=args.jobs, threads=args.threads)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m powerlaw_lib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("list", "status", "run", "sweep", "evaluate", "show",
                                        "claims", "audit", "retrain"))
    ap.add_argument("grid", nargs="?", choices=sorted(CHAPTER_GRIDS),
                    help="a chapter's grid (optional for list and status)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="NAME=VALUE", help="override a grid parameter")
    ap.add_argument("--results", default="data/results", help="result store folder")
    ap.add_argument("--params", default=None, metavar="FILE",
                    help="a chapter parameter file (params/paper.yml): its section for GRID "
                         "gives the grid's parameters, as the chapter would")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--scheduler", "--dask", dest="scheduler", default=None,
                       metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS "
                       "(tcp://host:8786); each run uses its worker's threads")
    where.add_argument("--local", action="store_true",
                       help="run on this machine (the default)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="local runs side by side, each in its own process (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per local run with --jobs (default: cores / jobs)")
    ap.add_argument("--dry-run", action="store_true", help="sweep: plan and print only")
    ap.add_argument("--limit", type=int, default=None, help="run at most this many configs")
    ap.add_argument("--order", choices=("grid", "method", "seed"), default="grid",
                    help="run missing configs in grid order; method by method (all seeds of "
                         "one method before the next), so whole methods finish first; or seed "
                         "by seed (every method's seed 0 before any seed 1), so the β-selection "
                         "runs, which decide the other seeds' β, finish first")
    ap.add_argument("--cached-only", action="store_true",
                    help="evaluate: only configs whose trained model is cached (never train)")
    ap.add_argument("--replace", action="store_true",
                    help="evaluate: where a retrained model does not reproduce the stored "
                         "training (another CPU), replace that training's stored results "
                         "and audits (moved to superseded/) instead of refusing")
    return ap


def _grid(args: argparse.Namespace, default_results: str) -> tuple[list, ResultStore, dict]:
    """The grid's configs (--params, then --set), the store (--results, or the
    parameter file's results folder when --results is left at its default), and the grid
    parameters used."""
    grid_fn = CHAPTER_GRIDS[args.grid]
    store = ResultStore(args.results)
    try:
        params = {}
        if args.params:
            from .sweep import grid_parameters_from_file

            params, results_dir = grid_parameters_from_file(args.params, args.grid, grid_fn)
            if results_dir and args.results == default_results:
                store = ResultStore(results_dir)
        params = {**params, **_parse_overrides(grid_fn, args.overrides)}
        return grid_fn(**params), store, params
    except ValueError as e:
        raise SystemExit(f"invalid grid parameters: {e}") from None


def _audit_pairs(grid: str, configs: list, params: dict) -> list:
    """The (run, spec) audits of a chapter's grid: `grids.CHAPTER_AUDITS`."""
    if grid not in CHAPTER_AUDITS:
        raise SystemExit(f"{grid} has no audits; chapters with audits: "
                         f"{', '.join(sorted(CHAPTER_AUDITS))}")
    return CHAPTER_AUDITS[grid](configs, **(params if grid == "audit" else {}))


def _deep_selection_status(store: ResultStore, params: dict) -> None:
    """The deep chapter's β selection: per SpecReg variant, the rule's pick once its
    selection runs are stored, and whether `grids.DEEP_CHOSEN_BETAS` records it (the
    chosen β's other seeds join the grid only then)."""
    from . import grids

    table = grids.deep_beta_selection(store, **{k: v for k, v in params.items()
                                                if k != "chosen_betas"})
    chosen = dict(grids.DEEP_CHOSEN_BETAS if params.get("chosen_betas") is None
                  else params["chosen_betas"])
    print("β selection (largest β within 1 point of the reference's clean accuracy on the "
          "selection seed):")
    for arch in params.get("archs", ("mlp", "cnn")):
        for variant in grids.DEEP_SPECREG_VARIANTS:
            key = f"{arch}/{variant}"
            if key not in table:
                state = "selection runs not all stored"
            elif chosen.get(key) == table[key]["beta"]:
                state = f"β = {table[key]['beta']:g} chosen"
            else:
                state = (f"the rule picks β = {table[key]['beta']:g}; set "
                         f"DEEP_CHOSEN_BETAS[{key!r}] in grids.py to train its other seeds")
            print(f"  {key:<22} {state}")


def _status(grid: str, configs: list, store: ResultStore, params: dict) -> int:
    """Stored / missing runs of a grid, each missing run's estimate and recorded failure;
    for a chapter with audits, its stored and missing audits."""
    from .costs import grid_estimate

    missing = store.missing(configs)
    print(f"{grid}: {len(configs) - len(missing)}/{len(configs)} stored in {store.path}; "
          f"{len(missing)} missing")
    estimates, total, unknown = grid_estimate(missing, store)
    varying = varying_fields(configs)
    for c, e in zip(missing, estimates):
        cost = f"{e.seconds / 3600:5.2f} h ({e.source})" if e.known else "   ? h (no estimate)"
        print(f"  missing {c.key}  {cost}  {describe(c, varying)}")
        failure = store.failure(c)
        if failure:
            print(f"    FAILED {failure['when']}: {failure['error']}: {failure['message']}")
    if missing:
        print(f"estimated CPU time of the missing runs: {total / 3600:.1f} h"
              + (f" + {unknown} run(s) without an estimate (run `make bench`)" if unknown else ""))
    if grid == "deep":
        _deep_selection_status(store, params)
    if grid in CHAPTER_AUDITS:
        from .audits import AuditStore

        audits = AuditStore(store.audits_path, store)
        pairs = _audit_pairs(grid, configs, params)
        absent = [(c, s) for c, s in pairs if audits.get(c, s) is None]
        print(f"{grid}: {len(pairs) - len(absent)}/{len(pairs)} audits stored in {audits.path}; "
              f"{len(absent)} missing")
        for c, s in absent:
            print(f"  missing audit {c.key}-{s.key}  {c.label}"
                  + ("" if c in store else "  (run not stored yet)"))
    return 0


def _show(configs: list, store: ResultStore) -> int:
    """One line per run: key, clean accuracy, the fields that tell the runs apart."""
    varying = varying_fields(configs)
    print(f"{len(configs)} runs; common to all: {configs[0].label.rsplit(' seed ', 1)[0]} "
          f"(only the fields below differ)" if configs else "no runs")
    for c in configs:
        r = store.get(c)
        acc = f"{r.metrics['clean_accuracy']:.4f}" if r else "  -   "
        print(f"{c.key}  acc={acc}  {describe(c, varying)}")
    return 0


def _claims(grid: str, configs: list, store: ResultStore, params: dict) -> int:
    """The chapter's claims (`verdicts.chapter_claims`) on the grid's stored runs."""
    from .verdicts import CHAPTER_CLAIMS, chapter_claims, claim_lines, extra_lines

    if grid not in CHAPTER_CLAIMS:
        raise SystemExit(f"{grid} has no claims judged by the library; chapters with claims: "
                         f"{', '.join(sorted(CHAPTER_CLAIMS))}")
    results = [r for r in (store.get(c) for c in configs) if r is not None]
    missing = len(configs) - len(results)
    print(f"{grid}: {len(results)}/{len(configs)} runs stored in {store.path}"
          + (f"; PROVISIONAL, {missing} missing: judged on the stored runs only (the chapter "
             "judges the complete grid)" if missing else ""))
    for line in claim_lines(chapter_claims(grid, results, params)) + extra_lines(grid, results, params):
        print(line)
    return 0


def _run(args: argparse.Namespace, configs: list, store: ResultStore, executor) -> int:
    """`run` and `evaluate`: the missing configs, in grid or method order, up to --limit."""
    from .experiments import GridRunError, run_grid

    missing = store.missing(configs)
    if args.command == "evaluate":
        from .model_cache import ModelCache

        cache = ModelCache(store.models_path)
        cached = [c for c in missing if c in cache]
        print(f"{args.grid}: {len(missing)} result(s) missing; {len(cached)} from cached models "
              f"(no training), {len(missing) - len(cached)} to retrain"
              + (" -- skipped (--cached-only)" if args.cached_only else ""))
        if args.cached_only:
            missing = cached
    missing = _ordered(args.order, configs, missing)
    todo = missing[: args.limit] if args.limit else missing
    if args.command == "evaluate" and args.replace:
        return _evaluate_replacing(args, configs, todo, store)
    try:
        run_grid(todo, store, executor=executor)
    except GridRunError as err:
        print(err)
        return 1
    print(f"{args.grid}: {len(todo)} run(s) finished; "
          f"{len(store.missing(configs))} still missing")
    return 0


def _evaluate_replacing(args: argparse.Namespace, configs: list, todo: list,
                        store: ResultStore) -> int:
    """`evaluate --replace`: the configs one by one on this machine, one line each."""
    from .experiments import evaluate_replacing

    if args.scheduler or args.jobs != 1:
        raise SystemExit("evaluate --replace runs on this machine only (no --scheduler, "
                         "--jobs 1): a replaced training's model is cached here")
    for config in todo:
        outcome = evaluate_replacing(config, store)
        print(f"{config.key}  {outcome}  {config.label}", flush=True)
    print(f"{args.grid}: {len(todo)} run(s) finished; "
          f"{len(store.missing(configs))} still missing")
    return 0


def _ordered(order: str, configs: list, todo: list) -> list:
    """`todo` in the run order `order` ("grid", "method" or "seed") of the grid `configs`.

    "method": method by method (grid order of methods), seeds ascending;
    "seed": seed by seed (seeds ascending), grid order within a seed.
    """
    if order == "grid":
        return list(todo)
    if order == "seed":
        position = {c.key: i for i, c in enumerate(configs)}
        return sorted(todo, key=lambda c: (c.seed, position[c.key]))
    from .analysis import method_key

    first: dict[str, int] = {}
    for c in configs:
        first.setdefault(method_key(c), len(first))
    return sorted(todo, key=lambda c: (first[method_key(c)], c.seed))


def _retrain(args: argparse.Namespace, configs: list, store: ResultStore) -> int:
    """`retrain GRID`: a cached model for every stored run of the grid, one line each."""
    from .experiments import retrain
    from .model_cache import ModelCache

    cache = ModelCache(store.models_path)
    todo = [c for c in configs if c in store and c not in cache]
    todo = _ordered(args.order, configs, todo)
    todo = todo[: args.limit] if args.limit else todo
    print(f"{args.grid}: {len(todo)} stored run(s) without a cached model to retrain")
    for config in todo:
        outcome = retrain(config, store)
        print(f"{config.key}  {outcome}  {config.label}", flush=True)
    left = len(store.missing(configs))
    if left:
        print(f"{args.grid}: {left} run(s) missing (superseded results of the same training "
              "are evaluated from the cached models by `evaluate`)")
    return 0


def _audit(args: argparse.Namespace, configs: list, store: ResultStore, params: dict) -> int:
    """`audit GRID`: the chapter's audits of stored runs, missing ones run (at most --limit)
    and stored, one line each."""
    from .audits import AuditStore, audit_run

    grid = args.grid
    audits = AuditStore(store.audits_path, store)
    pairs = _audit_pairs(grid, configs, params)
    unstored = [(c, s) for c, s in pairs if c not in store and audits.get(c, s) is None]
    pairs = [p for p in pairs if p not in unstored]
    missing = [c for c, s in pairs if audits.get(c, s) is None]
    todo = pairs if args.limit is None else [p for p in pairs if audits.get(*p)] + [
        p for p in pairs if audits.get(*p) is None][: args.limit]
    print(f"{grid}: {len(pairs)} audit(s) of stored runs, {len(missing)} to run"
          + (f" (at most {args.limit})" if args.limit is not None else ""))
    for c, _ in unstored:
        print(f"  skipped (run not stored; `python -m powerlaw_lib run {grid}` first): {c.label}")
    for config, spec in todo:
        record = audit_run(config, spec, store, audits)
        worst = " ".join(f"ε={e:g}: {100 * a:.1f} %" for e, a in zip(spec.eps, record.robust_accuracy))
        print(f"{config.key}  worst case {worst}  checks failed: "
              f"{', '.join(record.checklist['failed']) or 'none'}  {config.label}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.grid is None:
        if args.command not in ("list", "status"):
            ap.error(f"{args.command} needs a GRID: one of {', '.join(sorted(CHAPTER_GRIDS))}")
        return _summary(ResultStore(args.results), detailed=args.command == "status")
    configs, store, params = _grid(args, ap.get_default("results"))
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        raise SystemExit("--jobs and --threads must be integers >= 1")
    if args.command == "status":
        return _status(args.grid, configs, store, params)
    if args.command == "show":
        return _show(configs, store)
    if args.command == "claims":
        return _claims(args.grid, configs, store, params)
    if args.command == "audit":
        return _audit(args, configs, store, params)
    if args.command == "retrain":
        return _retrain(args, configs, store)
    executor = _executor(args)
    if args.command == "sweep":
        from .sweep import plan, run_sweep

        the_plan = plan(configs, store)
        the_plan.report()
        return 0 if args.dry_run else run_sweep(the_plan, store, executor=executor,
                                                progress=args.jobs == 1)
    return _run(args, configs, store, executor)


if __name__ == "__main__":
    sys.exit(main())
