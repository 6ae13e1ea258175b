"""`make bench`: speed of spectrally regularized training and of attack evaluation.

Measures, in one process, and prints a table; writes ``benchmarks/results.json``:

- ``gemm_gflops_fp32``, ``gemm_gflops_bf16`` -- large square matmul throughput.
- ``specreg_step_speedup_vs_loop`` -- one shallow SpecReg training step (784-2000-10, tanh,
  batch norm, batch 3000, α = 1, τ = 10, β = 2; Nassar et al. 2020, §4.1) with the loop
  baseline of :mod:`benchmarks.reference` over the library's step, same inputs; the two
  penalties are asserted to agree to 1e-5 relative.
- ``specreg_step_loop_flop_ratio`` -- the loop step's analytic FLOPs over the library's:
  the speedup the library would show if both ran their matrix products equally fast.
- ``specreg_step_gemm_fraction`` -- analytic FLOPs of that step / its time / the float32
  GEMM rate measured in the same interleaved rounds.
- ``specreg_epoch_gemm_fraction`` -- the same for a whole regularized MNIST epoch
  (60,000 images: refresh, 20 steps, test accuracy).
- ``bf16_epoch_speedup`` -- that epoch in fp32 over the same epoch under bf16 autocast.
- ``pgd_curve_speedup_vs_naive`` -- PGD-40 accuracy curve over the ε grid of the paper
  (0, 0.02, ..., 0.2 and 0.05: 12 values) on 2,000 test images: naive over library time; the library's
  accuracy is asserted to be <= the naive one at every ε.
- The step figures for the 3x1000 MLP (batch 1500) and the CNN (batch 6000), both with
  SpecReg on every hidden layer (§4.3).
- ``cnn_step_speedup_vs_baseline`` -- the vanilla CNN step (batch 6000) of the
  pre-optimisation implementation (:mod:`benchmarks.reference_cnn`, glibc's default
  allocator) over the library's, same weights and batch; the other CNN methods' ratios in
  ``details["cnn_speed"]`` (:mod:`benchmarks.cnn`).
- ``cnn_pgd_curve_in_epochs`` -- the CNN's PGD-40 accuracy curve (12 ε, 2,000 images) of a
  briefly trained vanilla CNN, in units of one vanilla CNN training epoch at batch 6000;
  ``details["cnn_pgd"]["pgd_shared_prefix_speedup"]``: the same curve with every ε started
  from x, over the library's (each ε resumes the iterates no smaller ball clipped).
- ``costs`` (a section of its own) -- seconds per step, refresh and evaluation of every
  cost class of the chapters' grids, and as multiples of a GEMM (:mod:`benchmarks.costs`),
  read by `powerlaw_lib.costs.estimate_seconds`.
- ``slope_step_vs_plain_shallow``, ``slope_step_vs_plain_mlp`` -- a training step with the
  slope penalty of Gerum et al. 2022 (``SlopeRegularizer(method="subspace")``, ranks 6..50)
  over an unregularized step of the same model, batch 1500, Adam, float32: the shallow
  784-2000-10 net (no batch norm, as in the α sweep, penalty on its hidden layer) and the 784-1000-1000-1000-10
  MLP (penalty on all three hidden layers). One cold start every ``restart_every`` steps is
  included (amortised). Lower is better; the goal is <= 2.
- ``side_by_side_gain_<step>`` -- total training steps per second of two single-thread
  processes side by side over one process on two threads (:mod:`benchmarks.side_by_side`):
  the vanilla CNN, the 3x1000 MLP with the slope penalty, the 2000-wide MLP with eq. 2.
  Informational (no target): above 1, `sweep --jobs 2 --threads 1` trains more per hour.

Every step, epoch and curve timed in this process runs as `powerlaw_lib.training.train` runs
it: with :func:`powerlaw_lib.hardware.keep_freed_memory` on (set once at the start, since it
is process-wide; before, it went on only when the first epoch figure called `train`, so the
step figures timed before it ran with glibc's defaults). The CNN baseline of
``cnn_step_speedup_vs_baseline`` keeps glibc's defaults in a process of its own.

Absolute times are this machine's; ratios are what carries over. See
:mod:`benchmarks.flops` for exactly which FLOPs are counted.

bf16 is fast only on CPUs with AVX512-BF16 or AMX (:mod:`powerlaw_lib.hardware`). Elsewhere
bf16 is emulated, tens of times slower than float32, and timing whole bf16 epochs would take
an hour: the bf16 steps, refresh and epochs are then skipped (their metrics are null, the
table says why) and only a small bf16 GEMM is timed to document the emulation.
``--bf16 yes`` times them anyway, ``--bf16 no`` never.

Usage: ``python -m benchmarks.run [--quick] [--bf16 auto|yes|no] [--out PATH]``. ``--quick``
uses small sizes (a smoke test of the machinery; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from powerlaw_lib.config import EPS_GRID, RunConfig
from powerlaw_lib.experiments import load_data
from powerlaw_lib.hardware import cpu_capability, has_native_bf16, keep_freed_memory

from .cnn import cnn_pgd_figures, cnn_speed_figures
from .costs import cost_figures, grid_cost_classes
from .measures import (GEMM_SIZE, epoch_figures, gemm_gflops, pgd_figures, refresh_figures,
                       slope_step_figures, step_figures)
from .side_by_side import SIDE_BY_SIDE_CONFIGS, side_by_side_figures
from .timing import machine_description

RESULTS = Path(__file__).resolve().parent / "results.json"

#: Targets of the performance issue (all ratios from one run).
TARGETS = {
    "specreg_step_speedup_vs_loop": 3.0,
    "specreg_step_gemm_fraction": 0.6,
    "specreg_epoch_gemm_fraction": 0.5,
    "bf16_epoch_speedup": 2.5,
    "pgd_curve_speedup_vs_naive": 3.0,
    "cnn_step_speedup_vs_baseline": 3.0,
    "cnn_step_gemm_fraction": 0.7,
}
#: Targets that are upper bounds (lower is better).
UPPER_TARGETS = {
    "slope_step_vs_plain_shallow": 2.0,
    "slope_step_vs_plain_mlp": 2.0,
    "cnn_pgd_curve_in_epochs": 4.0,
}

SHALLOW = RunConfig(hidden=(2000,), batch_norm=True, regularizer="spectral", reg_layers=(1,),
                    alpha=1.0, tau=10, beta=2.0, batch_size=3000)
MLP3 = RunConfig(hidden=(1000, 1000, 1000), batch_norm=False, regularizer="spectral",
                 reg_layers=(1, 2, 3), alpha=1.0, tau=10, beta=2.0, batch_size=1500)
CNN = RunConfig(arch="cnn", hidden=(1000,), batch_norm=False, regularizer="spectral",
                reg_layers=(1, 2, 3), alpha=1.0, tau=10, beta=2.0, batch_size=6000)
#: Models of the slope-step ratios and their penalized layers (Gerum et al. 2022, ranks 6..50).
#: The configs carry no regularizer: batch 1500 is below the 2000-wide layer, which the
#: slope penalty allows (it needs batch > 50 only).
SLOPE = {"shallow": (RunConfig(hidden=(2000,), batch_norm=False, batch_size=1500), (1,)),
         "mlp": (RunConfig(hidden=(1000, 1000, 1000), batch_norm=False, batch_size=1500), (1, 2, 3))}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


#: Size of the bf16 GEMM on a CPU that emulates bf16 (2048³ would take seconds per product).
EMULATED_BF16_GEMM_SIZE = 512


def run(quick: bool = False, bf16: bool | None = None) -> dict:
    """All measurements; `bf16=None` times the bf16 paths only where they are native."""
    start = time.perf_counter()
    keep_freed_memory()  # as `train` does (process-wide)
    native = has_native_bf16()
    bf16 = native if bf16 is None else bf16
    results: dict = {"machine": machine_description(), "quick": quick,
                     "bf16_native": native, "bf16_timed": bf16}
    metrics: dict[str, float | None] = {}
    details: dict[str, dict] = {}
    _log(f"machine: {results['machine']['cpu']}, {results['machine']['logical_cpus']} CPUs, "
         f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_capability()}, "
         f"bf16 {'native' if native else 'emulated'}"
         f"{'' if bf16 else ' (bf16 steps and epochs not timed)'}")

    _log("GEMM throughput")
    bf16_size = GEMM_SIZE if native else EMULATED_BF16_GEMM_SIZE
    gemm = [gemm_gflops(repeats=3 if quick else 9, bf16_size=bf16_size)]

    data = load_data(RunConfig(dataset="mnist"))
    x_tr, y_tr, x_te, y_te = data
    if quick:
        data = (x_tr[:6000], y_tr[:6000], x_te[:1000], y_te[:1000])
        x_tr, y_tr, x_te, y_te = data

    configs = {"shallow": SHALLOW, "mlp3x1000": MLP3, "cnn": CNN}
    repeats = {"shallow": 5, "mlp3x1000": 4, "cnn": 2}
    for name, config in configs.items():
        if quick:
            config = config.replace(batch_size=config.batch_size // 10 + max(config.hidden_widths) // 10,
                                    hidden=tuple(w // 10 for w in config.hidden)) \
                if config.arch == "mlp" else config.replace(batch_size=3000, hidden=(100,))
            configs[name] = config
        b = config.batch_size
        _log(f"step: {config.label}, batch {b}")
        details[f"{name}_step"] = step_figures(config, x_tr[:4 * b], x_tr[:b], y_tr[:b],
                                               repeats=2 if quick else repeats[name], bf16=bf16)
        _log(f"  {details[f'{name}_step']}")

    for name, (config, layers) in SLOPE.items():
        if quick:
            config = config.replace(batch_size=config.batch_size // 10,
                                    hidden=tuple(w // 10 for w in config.hidden))
        b = config.batch_size
        _log(f"slope step (subspace) vs plain step: {config.label}, layers {list(layers)}, batch {b}")
        details[f"slope_{name}_step"] = slope_step_figures(config, layers, x_tr[:b], y_tr[:b],
                                                           repeats=2 if quick else 5)
        _log(f"  {details[f'slope_{name}_step']}")

    _log("CNN step per method: library vs the pre-optimisation implementation")
    details["cnn_speed"] = cnn_speed_figures(batch=3000 if quick else 6000,
                                             repeats=2 if quick else 3, rounds=1 if quick else 2)
    _log(f"  {details['cnn_speed']}")

    _log("CNN PGD-40 curve (12 ε, 2,000 images) against one CNN training epoch")
    details["cnn_pgd"] = cnn_pgd_figures(data, EPS_GRID, n_images=200 if quick else 2000,
                                         train_images=6000 if quick else 60_000)
    _log(f"  {details['cnn_pgd']}")

    _log("costs of every configuration class of the chapters' grids")
    costs = {}
    datasets = {"mnist": (x_tr, y_tr, x_te)}
    for cls, (chapter, config) in grid_cost_classes().items():
        if quick:
            config = config.replace(batch_size=min(config.batch_size, 3000))
        if config.dataset not in datasets:
            d_tr, dy_tr, d_te, _ = load_data(config)
            datasets[config.dataset] = (d_tr[:len(x_tr)], dy_tr[:len(x_tr)], d_te)
        c_tr, cy_tr, c_te = datasets[config.dataset]
        figures = cost_figures(config, c_tr, cy_tr, n_test=len(c_te), repeats=1 if quick else 3)
        costs[cls] = {"chapter": chapter, "label": config.label, **figures}
        _log(f"  {chapter}: {config.label}: step {figures['step_seconds']:.3f} s, refresh "
             f"{figures['refresh_seconds']:.2f} s, evaluation <= {figures['evaluate_seconds']:.0f} s")
    results["costs"] = costs

    shallow = configs["shallow"]
    _log("refresh alone: shallow net, whole training set")
    details["shallow_refresh"] = refresh_figures(shallow, x_tr, repeats=1, bf16=bf16)
    _log(f"  {details['shallow_refresh']}")
    _log(f"epochs: shallow SpecReg, {'fp32 and bf16' if bf16 else 'fp32'}")
    details["shallow_epoch"] = epoch_figures(shallow, data, repeats=1 if quick else 2, bf16=bf16)
    _log(f"  {details['shallow_epoch']}")

    _log("PGD-40 accuracy curve: library vs naive")
    details["pgd"] = pgd_figures(data, EPS_GRID, n_images=200 if quick else 2000,
                                 steps=5 if quick else 40, train_images=3000 if quick else 15000)
    _log(f"  speedup {details['pgd']['pgd_curve_speedup_vs_naive']:.2f}")
    _log("two single-thread runs side by side against one run on two threads")
    details["side_by_side"] = {name: side_by_side_figures(name, steps=2 if quick else 8,
                                                          rounds=1 if quick else 2, quick=quick)
                               for name in SIDE_BY_SIDE_CONFIGS}
    _log(f"  {details['side_by_side']}")
    gemm.append(gemm_gflops(repeats=3 if quick else 9, bf16_size=bf16_size))

    metrics["gemm_gflops_fp32"] = statistics.median(g["gemm_gflops_fp32"] for g in gemm)
    metrics["gemm_gflops_bf16"] = statistics.median(g["gemm_gflops_bf16"] for g in gemm)
    s = details["shallow_step"]
    metrics["specreg_step_speedup_vs_loop"] = s["speedup_vs_loop"]
    # the ratio the speedup would have if library and loop ran their GEMMs equally fast
    metrics["specreg_step_loop_flop_ratio"] = s["loop_over_library_flops"]
    metrics["specreg_step_gemm_fraction"] = s["gemm_fraction"]
    e = details["shallow_epoch"]
    metrics["specreg_epoch_gemm_fraction"] = e["gemm_fraction"]
    metrics["bf16_epoch_speedup"] = e["bf16_speedup"]
    metrics["pgd_curve_speedup_vs_naive"] = details["pgd"]["pgd_curve_speedup_vs_naive"]
    for name in ("mlp3x1000", "cnn"):
        d = details[f"{name}_step"]
        metrics[f"{name}_step_speedup_vs_loop"] = d["speedup_vs_loop"]
        metrics[f"{name}_step_gemm_fraction"] = d["gemm_fraction"]
        metrics[f"{name}_bf16_step_speedup"] = d["bf16_step_speedup"]
    metrics["shallow_bf16_step_speedup"] = s["bf16_step_speedup"]
    for name in SLOPE:
        metrics[f"slope_step_vs_plain_{name}"] = details[f"slope_{name}_step"]["slope_over_plain"]
    cnn = details["cnn_speed"]
    metrics["cnn_step_speedup_vs_baseline"] = cnn["vanilla"]["speedup"]
    for method, figures in cnn.items():
        metrics[f"cnn_{method}_step_speedup_vs_baseline"] = figures["speedup"]
    metrics["cnn_pgd_curve_in_epochs"] = details["cnn_pgd"]["pgd_curve_in_epochs"]
    for name, figures in details["side_by_side"].items():
        metrics[f"side_by_side_gain_{name}"] = figures["side_by_side_gain"]

    results.update(metrics=metrics, targets=TARGETS, upper_targets=UPPER_TARGETS, details=details,
                   gemm_start_end=gemm, seconds_total=time.perf_counter() - start)
    return results


def format_table(results: dict) -> str:
    """Metrics, targets and pass/fail, then the absolute times (this machine)."""
    m, targets, d = results["metrics"], results["targets"], results["details"]
    upper = results.get("upper_targets", {})
    lines = [f"{'metric':38s} {'value':>9s} {'target':>8s}  ok", "-" * 62]
    for key, value in m.items():
        target, sign = (upper[key], "<=") if key in upper else (targets.get(key), ">=")
        if value is None:
            ok, shown = ("not timed" if target is not None else ""), f"{'n/a':>9s}"
        else:
            met = value <= target if sign == "<=" else value >= target if target else None
            ok = "" if target is None else ("yes" if met else "NO")
            shown = f"{value:9.3f}"
        lines.append(f"{key:38s} {shown} {'' if target is None else f'{sign} {target:g}':>8s}  {ok}")
    if not results.get("bf16_timed", True):
        lines.append(f"(bf16 not timed: this CPU has no AVX512-BF16/AMX, bf16 is emulated; "
                     f"gemm_gflops_bf16 is a {results['gemm_start_end'][0]['gemm_bf16_size']}³ product)")
    lines += ["", "times on this machine (s, medians):"]

    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "n/a" if value is None else format(value, spec)

    for name in ("shallow", "mlp3x1000", "cnn"):
        s = d[f"{name}_step"]
        lines.append(f"  {name:10s} step  library fp32 {s['step_seconds_library_fp32']:.3f}  "
                     f"loop fp32 {s['step_seconds_loop_fp32']:.3f}  library bf16 "
                     f"{fmt(s['step_seconds_library_bf16'])}  plain fp32 {s['step_seconds_plain_fp32']:.3f}"
                     f"  ({s['step_gflop']:.1f} GFLOP)")
    for name in SLOPE:
        s = d.get(f"slope_{name}_step")
        if s is not None:
            lines.append(f"  slope {name:7s} step  subspace fp32 {s['step_seconds_slope_fp32']:.3f}  "
                         f"cold start {s['step_seconds_slope_cold_start_fp32']:.3f}  "
                         f"plain fp32 {s['step_seconds_plain_fp32']:.3f}")
    r, e, p = d["shallow_refresh"], d["shallow_epoch"], d["pgd"]
    lines.append(f"  shallow refresh  fp32 {r['refresh_seconds_fp32']:.2f}  bf16 {fmt(r['refresh_seconds_bf16'], '.2f')}")
    lines.append(f"  shallow epoch    fp32 {e['epoch_seconds_fp32']:.2f}  bf16 {fmt(e['epoch_seconds_bf16'], '.2f')}"
                 f"  ({e['epoch_gflop']:.0f} GFLOP)")
    lines.append(f"  PGD-40 curve     library {p['pgd_seconds_library']:.1f}  naive {p['pgd_seconds_naive']:.1f}"
                 f"  (net trained in {p['pgd_net_train_seconds']:.1f})")
    lines.append(f"  total {results['seconds_total']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test only)")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="time the bf16 steps and epochs: auto = only where bf16 is native")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON output (default {RESULTS}; --quick writes nothing unless given)")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, bf16={"auto": None, "yes": True, "no": False}[args.bf16])
    print()
    print(format_table(results))
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
