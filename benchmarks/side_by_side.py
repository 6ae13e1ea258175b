"""Two single-thread runs side by side against one run on two threads.

A sweep on a small machine can train one run at a time on every core, or several runs side
by side with fewer threads each (`python -m powerlaw_lib sweep GRID --local --jobs 2
--threads 1`). Which trains more steps per second depends on how well a step uses a second
thread. This measures it for a training step of a grid configuration: each timing runs in
processes of its own (a process's thread pool is fixed at its first parallel operation):

- one process with ``threads`` threads (default: every logical CPU), alone;
- two processes with ``threads // 2`` threads each, started together: both finish their
  set-up and wait at a barrier (a file), then step at the same time.

Each process reports the median seconds of its steps (after 2 untimed ones);
``side_by_side_gain`` = 2 · (one run's step time) / (the pair's mean step time): the total
steps per second of the pair over those of the single run (> 1: running side by side
trains more).

``make bench`` records these figures (``side_by_side_gain_<name>``); on their own:
``python -m benchmarks.side_by_side [--quick]``. A worker process is
``python -m benchmarks.side_by_side --worker NAME THREADS STEPS BARRIER_DIR [--quick]`` and
prints one JSON line ``{"seconds_per_step": ...}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from powerlaw_lib.config import RunConfig

__all__ = ["SIDE_BY_SIDE_CONFIGS", "side_by_side_figures"]

#: The kinds of step timed: the vanilla CNN (batch 6000), the 3×1000 MLP with Gerum's
#: slope penalty on its last layer (batch 1500) and the 2000-wide MLP with eq. 2 (batch
#: 3000), as the deep chapter and the α sweep train them.
SIDE_BY_SIDE_CONFIGS = {
    "cnn": RunConfig(arch="cnn", hidden=(1000,), batch_norm=False, batch_size=6000),
    "mlp3x1000_slope": RunConfig(hidden=(1000, 1000, 1000), batch_norm=False, regularizer="slope",
                                 reg_layers=(3,), alpha=2.0, batch_size=1500),
    "shallow_specreg": RunConfig(hidden=(2000,), batch_norm=False, regularizer="spectral",
                                 reg_layers=(1,), alpha=1.0, tau=10, beta=1.0, batch_size=3000),
}
WARMUP_STEPS = 2


def _default_threads() -> int:
    """The machine's logical CPUs, rounded down to an even number (at least 2)."""
    return 2 * max(1, (os.cpu_count() or 2) // 2)


def _quick(config: RunConfig) -> RunConfig:
    """Small sizes for a smoke test (numbers meaningless)."""
    if config.arch == "cnn":
        return config.replace(hidden=(100,), batch_size=600)
    return config.replace(hidden=(200,) * len(config.hidden), batch_size=300)


def _worker(name: str, threads: int, steps: int, barrier: Path, quick: bool) -> float:
    """Median seconds per training step of `SIDE_BY_SIDE_CONFIGS[name]` on `threads`
    threads, timed after the barrier file ``go`` appears."""
    torch.set_num_threads(threads)
    from powerlaw_lib.experiments import build
    from powerlaw_lib.hardware import keep_freed_memory
    from powerlaw_lib.methods import build_penalty
    from powerlaw_lib.methods.layered import refresh_eigenvectors
    from powerlaw_lib.training import make_optimizer, step_chunk, training_step

    keep_freed_memory()
    config = SIDE_BY_SIDE_CONFIGS[name]
    config = _quick(config) if quick else config
    torch.manual_seed(0)
    model, penalty = build(config), build_penalty(config)
    optimizer = make_optimizer(config, model)
    shape = (config.batch_size, *config.input_shape)
    x, y = torch.rand(shape), torch.randint(0, 10, (config.batch_size,))     # [B, C, H, W], [B]
    regularizers = getattr(penalty, "regularizers", {})
    if any(getattr(r, "needs_refresh", False) for r in regularizers.values()):
        refresh_eigenvectors(model, regularizers, torch.rand((2 * config.batch_size, *config.input_shape)))
    chunk = step_chunk(model, penalty)
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)
    times = []
    for _ in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        training_step(model, optimizer, penalty, x, y, chunk=chunk)
        times.append(time.perf_counter() - start)
    return statistics.median(times[WARMUP_STEPS:])


def _launch(name: str, threads: list[int], steps: int, quick: bool) -> list[float]:
    """Start one worker per entry of `threads` together; their seconds per step."""
    with tempfile.TemporaryDirectory() as tmp:
        barrier = Path(tmp)
        cmd = [sys.executable, "-m", "benchmarks.side_by_side", "--worker", name]
        procs = [subprocess.Popen([*cmd, str(t), str(steps), tmp, *(["--quick"] if quick else [])],
                                  stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parent.parent)
                 for t in threads]
        while len(list(barrier.glob("ready-*"))) < len(procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        (barrier / "go").touch()
        out = []
        for p in procs:
            stdout, _ = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"side-by-side worker for {name} failed (exit {p.returncode})")
            out.append(json.loads(stdout.strip().splitlines()[-1])["seconds_per_step"])
        return out


def side_by_side_figures(name: str, threads: int | None = None, steps: int = 8, rounds: int = 2,
                         quick: bool = False) -> dict[str, float]:
    """One run on `threads` threads (default: the machine's logical CPUs, rounded down to
    an even number) against two on `threads // 2` each, in `rounds` alternating rounds;
    medians over rounds."""
    threads = _default_threads() if threads is None else threads
    if threads < 2 or threads % 2:
        raise ValueError(f"threads must be an even number >= 2, got {threads}")
    alone, pair = [], []
    for _ in range(rounds):
        alone += _launch(name, [threads], steps, quick)
        pair.append(statistics.mean(_launch(name, [threads // 2] * 2, steps, quick)))
    one, two = statistics.median(alone), statistics.median(pair)
    return {"step_seconds_one_run": one, "step_seconds_side_by_side": two,
            "side_by_side_gain": 2 * one / two}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    args = [a for a in argv if a != "--quick"]
    if args and args[0] == "--worker":
        seconds = _worker(args[1], int(args[2]), int(args[3]), Path(args[4]), quick)
        print(json.dumps({"seconds_per_step": seconds}))
        return 0
    n = _default_threads()
    print(f"{'step':18s} {f'one run, {n} threads (s)':>23s} {f'two runs, {n // 2} each (s)':>23s} "
          f"{'gain':>6s}")
    for name in SIDE_BY_SIDE_CONFIGS:
        f = side_by_side_figures(name, steps=2 if quick else 8, rounds=1 if quick else 2, quick=quick)
        print(f"{name:18s} {f['step_seconds_one_run']:23.3f} {f['step_seconds_side_by_side']:23.3f} "
              f"{f['side_by_side_gain']:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
