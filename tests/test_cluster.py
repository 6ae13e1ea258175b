"""Grids on a Dask `LocalCluster` (loopback, 2 worker processes with 1 thread each) and the
sweep command: a killed worker, a failing config, the same config twice at once, Ctrl-C,
thread placement, and a cluster store equal to a local one. Each test is bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from powerlaw_lib import __main__ as cli
from powerlaw_lib.config import RunConfig
from powerlaw_lib.executors import DaskExecutor, LocalExecutor, torch_threads
from powerlaw_lib.experiments import GridRunError, run, run_grid
from powerlaw_lib.store import ResultStore
from powerlaw_lib.training import checkpoint_epochs

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parent.parent

TINY = RunConfig(hidden=(64,), batch_norm=False, lr=1e-3, batch_size=250, epochs=2,
                 train_subset=2000, test_subset=300, pgd_subset=100, fgsm_eps=(0.0, 0.1),
                 pgd_eps=(0.0, 0.1), pgd_steps=3, noise_sigma=(0.0, 0.3), strength_eps=(0.1,),
                 strength_restarts=1, strength_steps=3, strength_subset=50, sensitivity_top=0)
#: Long enough per epoch (about 0.3 s on one thread) to be caught in the middle of a run.
SLOW = TINY.replace(hidden=(256,), train_subset=20000, epochs=10)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)


def _assert_consistent(store: ResultStore, expected: list[RunConfig]) -> None:
    """Exactly the expected results, each whole and valid, and no temporary file."""
    files = sorted(store.path.glob("*.json"))
    assert sorted(p.stem for p in files) == sorted({c.key for c in expected})
    for p in files:
        json.loads(p.read_text())
    assert not list(store.path.glob("*.tmp")) and not list(store.path.glob(".*.tmp"))


def test_a_worker_killed_mid_run_restarts_that_run_from_its_last_checkpoint(tmp_path, client):
    store = ResultStore(tmp_path / "store")
    configs = [SLOW.replace(seed=s) for s in (0, 1)]
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(
        results=run_grid(configs, store, executor=client, progress=False)))
    thread.start()
    # both runs have saved at least two epochs and neither has finished: kill one worker
    _wait(lambda: all(checkpoint_epochs(store.checkpoint_path(c), c.key) >= 2 for c in configs),
          120, "two epochs of both runs")
    assert not any(c in store for c in configs)
    pid = next(iter(client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and "results" in box
    _assert_consistent(store, configs)
    resumed = [store.get(c).provenance["resumed_from_epoch"] for c in configs]
    assert max(resumed) >= 2 and min(resumed) == 0       # the killed run resumed, the other not
    killed = configs[resumed.index(max(resumed))]
    # the resumed run equals an uninterrupted one (this process has 2 threads: last bits differ)
    local = run(killed, ResultStore(tmp_path / "local"), progress=False)
    again = store.get(killed)
    for a, b in zip(again.history, local.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert again.metrics == pytest.approx(local.metrics, rel=1e-4, abs=1e-4)
    assert not list(store.checkpoint_dir.glob("*.pt"))   # checkpoints removed once stored


def test_a_failing_config_is_reported_and_recorded_and_the_grid_completes(tmp_path, client, capsys):
    store = ResultStore(tmp_path)
    good, bad = TINY, TINY.replace(train_subset=10**6)  # more images than MNIST has
    with pytest.raises(GridRunError) as err:
        run_grid([bad, good], store, executor=client, progress=False)
    assert err.value.failures[0][0] == bad and bad.key in str(err.value)
    assert bad.label in str(err.value)
    _assert_consistent(store, [good])
    record = store.failure(bad)
    assert record["key"] == bad.key and record["label"] == bad.label and record["error"]
    assert cli.main(["status", "--results", str(tmp_path)]) == 0     # the store summary runs


def test_the_same_config_given_to_two_workers_at_once_is_written_once(tmp_path, client):
    store = ResultStore(tmp_path)
    config = SLOW.replace(epochs=3)
    # two tasks at once, one per worker: without the per-config lock both would train and
    # the second write would fail (results are never overwritten)
    results = run_grid([config, config], store, executor=client, progress=False)
    assert results[0].metrics == results[1].metrics
    _assert_consistent(store, [config])
    assert store.failure(config) is None and not store.failure_dir.exists()


def test_a_cluster_sweep_gives_the_store_of_a_local_run(tmp_path, client):
    configs = [TINY.replace(seed=s) for s in (0, 1)]
    remote, local = ResultStore(tmp_path / "cluster"), ResultStore(tmp_path / "local")
    run_grid(configs, remote, executor=DaskExecutor(client), progress=False)
    run_grid(configs, local, executor=LocalExecutor(progress=False), progress=False)
    assert sorted(p.name for p in remote.path.glob("*.json")) == \
        sorted(p.name for p in local.path.glob("*.json"))
    for c in configs:
        assert remote.get(c).metrics == pytest.approx(local.get(c).metrics, rel=1e-6, abs=1e-9)


def test_each_run_uses_the_threads_it_is_given(client):
    assert DaskExecutor(client).map(torch_threads, [0, 1]) == [1, 1]   # workers: 1 thread each
    assert DaskExecutor(client).parallelism == 2
    assert LocalExecutor(jobs=2, threads=1).map(torch_threads, [0, 1]) == [1, 1]
    assert LocalExecutor(jobs=1).parallelism == 1


SWEEP = ["sweep", "shallow", "--set", "seeds=[0]", "--set", "betas=[2.0]",
         "--set", "no_bn_betas=[]", "--set", "text_lr_check=[]", "--set", "width=64",
         "--set", "batch_size=250", "--set", "train_subset=20000", "--set", "epochs=12",
         "--set", "test_subset=300", "--set", "pgd_subset=100",
         "--set", "eps_grid=[0.0, 0.1]", "--set", "noise_grid=[0.0, 0.3]"]


def test_ctrl_c_leaves_the_store_consistent_and_the_next_sweep_resumes(tmp_path, capsys):
    results = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A process started in the background of a non-interactive shell (as CI may start the
    # tests) inherits SIGINT as ignored; give the sweep the default Ctrl-C of a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "powerlaw_lib", *SWEEP, "--local",
                             "--results", str(results)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    store = ResultStore(results)
    try:
        _wait(lambda: any(checkpoint_epochs(p, p.stem) >= 2
                          for p in store.checkpoint_dir.glob("*.pt")), 120, "a checkpoint")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted" in out and "run the same command again to resume" in out
    stored = list(results.glob("*.json"))
    for p in stored:
        json.loads(p.read_text())
    assert not list(results.glob(".*.tmp"))
    # the next sweep finishes the grid, resuming the interrupted run from its checkpoint
    assert cli.main([*SWEEP, "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "all" in out and "finished" in out
    runs = list(store)
    assert len(runs) == 2 and len(stored) < 2
    assert any((r.provenance.get("resumed_from_epoch") or 0) >= 2 for r in runs)


def test_sweep_dry_run_plans_every_chapter_grid_with_its_cost(capsys):
    for grid in ("shallow", "deep", "alpha_sweep"):
        assert cli.main(["sweep", grid, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "runs:" in out and ("estimated CPU time" in out or "0 to train" in out)
    assert cli.main(["sweep", "alpha_sweep", "--dry-run", "--params",
                     str(ROOT / "params" / "quick.yml"), "--results", "/nonexistent"]) == 0
