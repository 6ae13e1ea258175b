"""Runs and grids of runs: config -> train (resumable) -> evaluate -> result store.

`run(config, store)` returns the stored result when there is one; otherwise it trains
(resuming from the run's per-epoch checkpoint when one exists), evaluates, and writes one
JSON result atomically. `run_grid(configs, store)` does that for a list of configs, on the
embedded local executor or on a Dask cluster (`executor="tcp://host:port"` or a
`distributed.Client`). A run that fails (e.g. a non-finite loss) writes nothing.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from . import __version__
from .config import RunConfig
from .data import load, load_cifar10_official_test, subset
from .evaluation import evaluate
from .executors import LocalExecutor, as_executor
from .model_cache import ModelCache
from .models import build_model
from .store import Result, ResultStore
from .inference import accuracy
from .local_training import build_kh, evaluate_kh, train_kh
from .training import checkpoint_epochs, train

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Fixed seed of the train/test subsets: every run of a grid sees the same images.
SUBSET_SEED = 0


def seed_everything(seed: int) -> None:
    """Seed torch and numpy, and ask torch for deterministic algorithms (CPU)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


#: The library's git state when this process imported it: the code that actually runs,
#: even if the checkout changes while a long run is under way.
GIT_AT_IMPORT = {"git_commit": _git("rev-parse", "HEAD"),
                 "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no",
                                        "--", "powerlaw_lib"))}


def provenance(seconds: dict[str, float]) -> dict[str, Any]:
    """Where and with what a result was produced (git state as of this process's import)."""
    return {
        **GIT_AT_IMPORT,
        "powerlaw_lib": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "seconds": seconds,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def load_data(config: RunConfig) -> tuple[torch.Tensor, ...]:
    """x_train, y_train, x_test, y_test for `config` (fixed subsets when asked).

    CIFAR-10's "test" set is its validation split, the last 10,000 training images
    (`data.load`); the 1,000 official test images are reported alongside by `run`.
    """
    x_tr, y_tr, x_te, y_te = load(config.dataset)
    if config.train_subset is not None:
        x_tr, y_tr = subset(x_tr, y_tr, config.train_subset, seed=SUBSET_SEED)
    if config.test_subset is not None:
        x_te, y_te = subset(x_te, y_te, config.test_subset, seed=SUBSET_SEED)
    return x_tr, y_tr, x_te, y_te


def build(config: RunConfig) -> torch.nn.Module:
    """The model of `config`, initialised from `config.seed`."""
    torch.manual_seed(config.seed)
    if config.arch == "kh":
        return build_kh(config)
    return build_model(config.arch, config.input_shape, config.n_classes, config.hidden,
                       config.activation, config.batch_norm, config.whiten_after)


class HistoryMismatchError(RuntimeError):
    """A retrained model's training history differs from a stored run with the same training."""


#: Relative tolerance of `histories_match` for logged numbers (losses are sums of float32
#: batch losses, whose last bits depend on the order and precision of the summation).
HISTORY_RTOL = 1e-6
#: Absolute tolerance for logged accuracies: 1e-4 is 6 of the 60,000 MNIST training images
#: or 1 of the 10,000 test images, whose prediction a rounding difference can flip.
HISTORY_ACCURACY_ATOL = 1e-4


def histories_match(a: list[dict[str, Any]], b: list[dict[str, Any]],
                    rtol: float = HISTORY_RTOL,
                    accuracy_atol: float = HISTORY_ACCURACY_ATOL) -> bool:
    """Whether two training histories record the same training: the same epochs and keys,
    every number equal to relative tolerance `rtol`, accuracies to `accuracy_atol`
    (wall-clock seconds aside).

    The same seed and code give the same training up to float rounding, and rounding
    differs between CPUs (their GEMM kernels sum in different orders) and between versions
    that sum the batch losses differently: logged losses then agree to about 1e-8, and a
    borderline prediction can flip in an accuracy. Training is chaotic, so a model that
    differs in anything more drifts to visibly different losses within a few epochs.
    """
    if len(a) != len(b):
        return False
    for row_a, row_b in zip(a, b):
        keys = set(row_a) - {"seconds"}
        if keys != set(row_b) - {"seconds"}:
            return False
        for k in keys:
            va, vb = row_a[k], row_b[k]
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
                atol = accuracy_atol if "accuracy" in k else 1e-12
                if not math.isclose(va, vb, rel_tol=rtol, abs_tol=atol):
                    return False
            elif va != vb:
                return False
    return True


def first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int | None:
    """The first epoch (1-based) at which two histories disagree (`histories_match`), or
    None when they match."""
    for epoch, (row_a, row_b) in enumerate(zip(a, b), start=1):
        if not histories_match([row_a], [row_b]):
            return epoch
    return None if len(a) == len(b) else min(len(a), len(b)) + 1


def stored_history(config: RunConfig, store: ResultStore) -> list[dict[str, float]] | None:
    """Training history of any stored run trained exactly like `config` (same training key)."""
    return next((r.history for r in store.trained_like(config)), None)


def _supersede_training(config: RunConfig, store: ResultStore, before: list[dict[str, Any]],
                        history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move every stored result trained like `config` to the store's superseded folder, and
    the audits of those results to the audits' superseded folder."""
    epoch = first_difference(before, history)
    row_old, row_new = before[epoch - 1], history[epoch - 1]
    cpu = platform.processor() or platform.machine()
    reason = (f"retrained from the same config and seed ({cpu}, {os.cpu_count()} cores): the "
              f"training history differs from epoch {epoch} on (loss {row_old.get('loss')!r} "
              f"stored, {row_new.get('loss')!r} retrained)")
    note = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason,
            "first_different_epoch": epoch, "by_commit": _git("rev-parse", "HEAD")}
    moved = []
    for r in store.trained_like(config):
        store.supersede(r.config, note)
        audits = store.supersede_audits(r.config, note)
        moved.append({"key": r.key, "finished": r.provenance.get("finished"),
                      "git_commit": r.provenance.get("git_commit"),
                      "clean_accuracy": r.metrics.get("clean_accuracy"),
                      **({"audits": audits} if audits else {}), **note})
    return moved


def trained_model(config: RunConfig, store: ResultStore, *, progress: bool = True,
                  stop_after: int | None = None,
                  on_unreproduced: Callable[[list, list], None] | None = None
                  ) -> tuple[torch.nn.Module | None, list[dict[str, float]], float, int | None]:
    """The trained model of `config`: from the model cache, else trained now.

    Returns (model, history, seconds trained in this call, the epoch training resumed from
    (0: from scratch; None: from the cache)); model is None when `stop_after` ended
    training early. Training resumes from the run's
    checkpoint when there is one. A model trained here whose training key matches a stored
    result must reproduce that result's history (`histories_match`: losses to a relative
    1e-6, accuracies to 1e-4, seconds aside), or `HistoryMismatchError` is raised and
    nothing is cached -- unless `on_unreproduced` is given (`retrain`): then it is called
    with (stored history, new history) and the new model is cached.
    """
    cache = ModelCache(store.models_path)
    seed_everything(config.seed)
    model = build(config)
    history = cache.load(config, model)
    if history is not None:
        return model, history, 0.0, None
    x_tr, y_tr, x_te, y_te = load_data(config)
    resumed_from = checkpoint_epochs(store.checkpoint_path(config), config.key)
    t0 = time.perf_counter()
    fit = train_kh if config.arch == "kh" else train
    history = fit(model, config, x_tr, y_tr, x_te, y_te, checkpoint=store.checkpoint_path(config),
                  progress=progress, stop_after=stop_after)
    seconds = time.perf_counter() - t0
    if len(history) < config.history_length:
        return None, history, seconds, resumed_from
    before = stored_history(config, store)
    if before is not None and not histories_match(before, history):
        if on_unreproduced is None:
            raise HistoryMismatchError(
                f"retraining {config.label} did not reproduce the stored training history of "
                f"the same training key {config.training_key}: nothing was stored")
        on_unreproduced(before, history)
    cache.save(config, model, history)
    return model, history, seconds, resumed_from


def run(config: RunConfig, store: ResultStore | str | os.PathLike, *, progress: bool = True,
        stop_after: int | None = None) -> Result | None:
    """Result of `config`: from the store, or evaluated now on its trained model.

    The trained model comes from the model cache (`trained_model`): a config that differs
    from a stored run only in its evaluation settings is evaluated without any training.
    `stop_after` trains that many epochs and returns None, leaving only the checkpoint
    (used to test that a killed run resumes to the same result).

    The config's lock in the store (`ResultStore.run_lock`) is held from the check for a
    stored result to the write, so concurrent callers (two Dask workers given the same
    config) run it once: the others wait and return the stored result.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    cached = store.get(config)
    if cached is not None:
        return cached
    with store.run_lock(config):
        return store.get(config) or _train_and_evaluate(config, store, progress, stop_after)


def retrain(config: RunConfig, store: ResultStore | str | os.PathLike, *,
            progress: bool = True) -> str:
    """Give the stored run `config` a cached model, training it anew if need be.

    Returns what happened: "cached" (the model was cached already), "trained" (`config`
    was not stored: it ran like `run`), "reproduced" (retrained; the history matches the
    stored one, which stands), or "replaced". A network whose training amplifies float
    rounding (an eigendecomposition in the loss) retrained on another CPU does not
    reproduce its stored history; its stored results (every config of the same training
    key) are then moved to the store's superseded folder, and `config` is evaluated anew on
    the new model, its result naming the results it replaces
    (``provenance["replaces"]``). The other configs of that training key become missing
    and are evaluated from the cached model by the next `run`/`evaluate`.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if config in ModelCache(store.models_path):
        return "cached"
    if config not in store:
        run(config, store, progress=progress)
        return "trained"
    moved: list[dict[str, Any]] = []
    with store.run_lock(config):
        trained_model(config, store, progress=progress, on_unreproduced=lambda before, history:
                      moved.extend(_supersede_training(config, store, before, history)))
        if not moved:
            return "reproduced"
        _train_and_evaluate(config, store, progress, None, {"replaces": moved})
    return "replaced"


def evaluate_replacing(config: RunConfig, store: ResultStore | str | os.PathLike, *,
                       progress: bool = True) -> str:
    """Store the result of `config`, a new evaluation setting of a training, even where the
    stored training does not reproduce on this machine.

    `run` evaluates `config` on the cached model, or retrains it and refuses (stores
    nothing) when the retraining does not reproduce the stored history of the same training
    key. Here such a training is replaced instead: `retrain` on the stored config of that
    training key moves every stored result of it (and their audits) to the superseded
    folders and evaluates that config anew on the new network; then `config` is evaluated
    on the same network, from the model cache. Returns "stored" (nothing to do),
    "evaluated" (cached or reproduced model), "replaced", or "trained" (no stored run of
    that training: trained like `run`).
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    if config in store:
        return "stored"
    twin = next((r.config for r in store.trained_like(config)), None)
    outcome = "trained" if twin is None else "evaluated"
    if twin is not None and config not in ModelCache(store.models_path):
        if retrain(twin, store, progress=progress) == "replaced":
            outcome = "replaced"
    run(config, store, progress=progress)
    return outcome


def _train_and_evaluate(config: RunConfig, store: ResultStore, progress: bool,
                        stop_after: int | None, extra_provenance: dict[str, Any] | None = None
                        ) -> Result | None:
    """`run` without the store lookup: train (or load) the model, evaluate, store."""
    model, history, train_seconds, resumed_from = trained_model(
        config, store, progress=progress, stop_after=stop_after)
    if model is None:
        return None
    t1 = time.perf_counter()
    torch.manual_seed(config.seed)
    _, _, x_te, y_te = load_data(config)
    ev = evaluate(model, config, x_te, y_te, progress=progress)
    ev["metrics"]["final_train_loss"] = history[-1]["loss"]
    weights = {}
    if config.arch == "kh":  # the currents' spectrum, Holzhausen et al.'s fits, weight images
        extra_metrics, extra_spectra, weights = evaluate_kh(model, config, x_te)
        ev["metrics"].update(extra_metrics)
        ev["spectra"].update(extra_spectra)
    if config.dataset == "cifar10":  # evaluated on the validation split: add the test set
        ev["metrics"]["official_test_accuracy"] = accuracy(model, *load_cifar10_official_test())
    seconds = {"train_this_session": train_seconds, "evaluate": time.perf_counter() - t1,
               "train_total": sum(h["seconds"] for h in history)}
    result = Result(config, ev["metrics"], ev["curves"], ev["spectra"], ev["sensitivity"],
                    history, {**provenance(seconds), "model_from_cache": resumed_from is None,
                              "resumed_from_epoch": resumed_from, **(extra_provenance or {})},
                    weights)
    store.put(result)
    store.checkpoint_path(config).unlink(missing_ok=True)
    return result


class GridRunError(RuntimeError):
    """Some configs of a grid raised; the others ran. `failures`: [(config, message)]."""

    def __init__(self, failures: list[tuple[RunConfig, str]]) -> None:
        self.failures = failures
        lines = "\n".join(f"  {c.key}  {c.label}: {msg}" for c, msg in failures)
        super().__init__(f"{len(failures)} run(s) failed (recorded in the store's .failures/, "
                         f"shown by `status` until they succeed):\n{lines}")


def _run_recording_failure(config: RunConfig, store: ResultStore, progress: bool) -> str | None:
    """Run `config`; on an exception, record it in the store and return its message."""
    try:
        run(config, store, progress=progress)
    except Exception as err:  # noqa: BLE001 -- any failure of one run must not stop the grid
        store.record_failure(config, err)
        return f"{type(err).__name__}: {err}"
    return None


def _run_task(config_dict: dict, store_path: str, progress: bool = False) -> str | None:
    """Executor task: run one config; None, or the error message (recorded in the store).

    Plain arguments (a dict, a path), so that the task pickles to any Dask worker.
    """
    config = RunConfig.from_dict(config_dict)
    error = _run_recording_failure(config, ResultStore(store_path), progress)
    if progress and error:
        print(f"  FAILED: {error} (recorded; the grid goes on)", flush=True)
    return error


def _task_label(config_dict: dict) -> str:
    config = RunConfig.from_dict(config_dict)
    return f"{config.label}  ({config.key})"


class TrainingNotAllowedError(RuntimeError):
    """A grid asked for runs that would train, and training was not allowed."""


def check_training_allowed(missing: Sequence[RunConfig], store: ResultStore) -> None:
    """Raise `TrainingNotAllowedError` naming the runs that would train and their cost.

    Runs whose trained model is in the model cache only need evaluating: they pass.
    """
    from .costs import grid_estimate

    cache = ModelCache(store.models_path)
    to_train = [c for c in missing if c not in cache]
    if not to_train:
        return
    _, total, unknown = grid_estimate(to_train, store)
    shown = "\n".join(f"  {c.key}  {c.label}" for c in to_train[:10])
    more = f"\n  ... and {len(to_train) - 10} more" if len(to_train) > 10 else ""
    raise TrainingNotAllowedError(
        f"{len(to_train)} run(s) of this grid are not in {store.path} and would be trained "
        f"(estimated {total / 3600:.1f} CPU hours"
        + (f", {unknown} without an estimate" if unknown else "") + f"):\n{shown}{more}\n"
        "Train them with `python -m powerlaw_lib run GRID` (resumable, in the background), "
        "or allow training here (chapter parameter allow_training=True; "
        "`make chapter ... TRAIN=1`).")


def run_grid(configs: Iterable[RunConfig], store: ResultStore | str | os.PathLike, *,
             executor: Any = None, progress: bool = True, allow_training: bool = True,
             on_done: Callable[[RunConfig, str | None], None] | None = None
             ) -> list[Result]:
    """Results of all `configs` (same order): cached ones loaded, missing ones run.

    executor: where the missing configs run (`executors`): None or a `LocalExecutor` runs
    them one after another in this process (the runs use both cores each, so that is also
    the fastest choice on a small machine); a `DaskExecutor`, a `distributed.Client` or a
    scheduler address ("tcp://...") runs them on a Dask cluster, every worker writing into
    the same store folder.

    `allow_training=False` (the chapters' default) raises `TrainingNotAllowedError`, before
    anything runs, when a missing config would have to be trained (its model is not in the
    model cache), naming those runs and their estimated CPU time.

    A config that raises does not stop the others: its error is recorded in the store
    (`ResultStore.record_failure`) and, once every other config has run, `GridRunError`
    names the failed ones. `on_done(config, error or None)` is called as each missing
    config finishes.
    """
    configs = list(configs)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    missing = store.missing(configs)
    if not allow_training:
        check_training_allowed(missing, store)
    runner = as_executor(executor, progress)
    in_process = isinstance(runner, LocalExecutor) and runner.jobs == 1
    done = None if on_done is None else (lambda i, error: on_done(missing[i], error))
    errors = runner.map(_run_task, [c.to_dict() for c in missing], str(store.path),
                        progress and in_process, describe=_task_label,
                        on_done=done) if missing else []
    failures = [(c, e) for c, e in zip(missing, errors) if e]
    if failures:
        raise GridRunError(failures)
    results = [store.get(c) for c in configs]
    absent = [c.label for c, r in zip(configs, results) if r is None]
    if absent:
        raise RuntimeError(f"runs missing from {store.path} after run_grid: {absent}")
    return results


def chapter_results(configs: Iterable[RunConfig], store: ResultStore, *, stored_only: bool = False,
                    allow_training: bool = False, executor: Any = None
                    ) -> tuple[list[Result], int]:
    """What a chapter renders: ``(results, number of runs trained now)``.

    By default every config's result (same order), through `run_grid`, which refuses to
    train unless `allow_training`. ``stored_only=True`` is a provisional preview of a grid
    still running: the results of the stored configs only (grid order), nothing trained;
    `provisional_notice` says what is left out. A preview of no stored run is an error.
    """
    configs = list(configs)
    if stored_only:
        stored = [store.get(c) for c in configs if c in store]
        if not stored:
            raise ValueError(f"stored_only: none of the grid's {len(configs)} runs is stored in "
                             f"{store.path}; there is nothing to preview")
        return stored, 0
    n_missing = len(store.missing(configs))
    results = run_grid(configs, store, progress=n_missing > 0, allow_training=allow_training,
                       executor=executor)
    return results, n_missing


def provisional_notice(n_stored: int, n_grid: int) -> str:
    """A MyST warning for a chapter rendered from `n_stored` of its grid's `n_grid` runs
    (`chapter_results(stored_only=True)`); "" when none is missing."""
    if n_stored >= n_grid:
        return ""
    return (":::{warning}\nProvisional: this page was rendered from the "
            f"{n_stored} of its grid's {n_grid} runs that are stored "
            f"({n_grid - n_stored} missing). Figures, tables and verdicts leave the missing "
            "runs out, so they may change when the grid is complete.\n:::")


def show_provisional_notice(n_stored: int, n_grid: int) -> None:
    """Display `provisional_notice` (a MyST warning that the page shows ``n_stored`` of its
    grid's ``n_grid`` runs) in a chapter rendered with ``stored_only``; nothing when the
    grid is complete."""
    from IPython.display import Markdown, display

    notice = provisional_notice(n_stored, n_grid)
    if notice:
        display(Markdown(notice))
