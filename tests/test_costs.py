"""The cost model (`powerlaw_lib.costs`) and the command line's store summaries."""

import json
import math

import pytest

from powerlaw_lib import __main__ as cli
from powerlaw_lib import grids
from powerlaw_lib.config import RunConfig
from powerlaw_lib.costs import (budget_texts, budget_verdict, cost_class, estimate_seconds, grid_estimate,
                                grid_hours, steps_per_epoch, unloaded_epoch_seconds)
from powerlaw_lib.store import Result, ResultStore

BASE = RunConfig(hidden=(64,), batch_size=100, epochs=10, train_subset=1000)


def _stored(store, config, epoch_seconds, evaluate=7.0):
    history = [{"epoch": i + 1, "loss": 1.0, "seconds": s} for i, s in enumerate(epoch_seconds)]
    store.put(Result(config, {"clean_accuracy": 0.9}, history=history,
                     provenance={"seconds": {"evaluate": evaluate,
                                             "train_total": sum(epoch_seconds)}}))


def test_steps_per_epoch_count_whole_batches_of_the_training_images():
    assert steps_per_epoch(BASE) == 10                                      # 1000 images / 100
    assert steps_per_epoch(RunConfig(arch="cnn", hidden=(1000,), batch_norm=False, batch_size=6000)) == 10
    assert steps_per_epoch(RunConfig(hidden=(64,), batch_size=1500)) == 40  # 60,000 MNIST images


def test_unloaded_epoch_seconds_ignores_slow_epochs():
    history = [{"seconds": s} for s in [2.0] * 8 + [9.0, 30.0]]
    assert unloaded_epoch_seconds(history) == 2.0
    assert unloaded_epoch_seconds([]) is None


def test_stored_runs_of_the_same_cost_class_give_the_estimate(tmp_path):
    store = ResultStore(tmp_path)
    _stored(store, BASE.replace(seed=0), [3.0] * 10)
    _stored(store, BASE.replace(seed=1, lr=1e-3), [5.0] * 10, evaluate=9.0)
    asked = BASE.replace(seed=7, epochs=20, optimizer="amsgrad")  # cost-neutral changes
    assert cost_class(asked) == cost_class(BASE)
    e = estimate_seconds(asked, store, bench=None)
    assert e.source == "stored runs (n=2)" and e.epoch_seconds == 4.0
    assert e.seconds == pytest.approx(4.0 * 20 + 8.0)
    other = estimate_seconds(BASE.replace(hidden=(128,)), store, bench=None)
    assert other.source == "none" and math.isnan(other.seconds) and not other.known


def test_benchmark_costs_are_used_and_rescaled_by_the_gemm_time(tmp_path):
    bench = tmp_path / "results.json"
    entry = {"step_seconds": 0.5, "refresh_seconds": 2.0, "evaluate_seconds": 30.0,
             "step_gemm_units": 5.0, "refresh_gemm_units": 20.0, "evaluate_gemm_units": 300.0}
    bench.write_text(json.dumps({"costs": {cost_class(BASE): entry}}))
    e = estimate_seconds(BASE, None, bench=bench)
    assert e.source == "benchmark" and e.seconds == pytest.approx((0.5 * 10 + 2.0) * 10 + 30.0)
    half = estimate_seconds(BASE, None, bench=bench, gemm_seconds=0.05)  # a 2x faster GEMM
    assert half.seconds == pytest.approx(e.seconds / 2)
    _, total, unknown = grid_estimate([BASE, BASE.replace(hidden=(128,))], ResultStore(tmp_path / "s"),
                                      bench=bench)
    assert total == pytest.approx(e.seconds) and unknown == 1


def test_grid_hours_sum_stored_and_missing_runs_and_judge_the_budget(tmp_path):
    store = ResultStore(tmp_path)
    _stored(store, BASE.replace(seed=0), [3.0] * 10)  # 30 s + 7 s evaluation
    grid = [BASE.replace(seed=0), BASE.replace(seed=1, epochs=20)]  # the second not stored
    assert grid_hours(grid, store, bench=None) == pytest.approx((37.0 + 67.0) / 3600)
    assert math.isnan(grid_hours([*grid, BASE.replace(hidden=(128,))], store, bench=None))
    assert budget_verdict(11.9) == "within" and budget_verdict(12.0) == "within"
    assert budget_verdict(12.1) == "above" and budget_verdict(3.0, budget_hours=2.0) == "above"
    assert budget_verdict(float("nan")) == "not yet known against"
    assert budget_texts(grid, store, bench=None) == {
        "grid_hours": "0.0", "budget_verdict": "within", "budget_hours": "12"}
    assert budget_texts(grid, store, bench=None, budget_hours=0.02)["budget_verdict"] == "above"
    unknown = budget_texts([*grid, BASE.replace(hidden=(128,))], store, bench=None)
    assert unknown["grid_hours"] == "nan" and unknown["budget_verdict"] == "not yet known against"


def test_list_and_status_summarize_every_grid(tmp_path, capsys):
    assert cli.main(["list", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for grid in ("shallow", "deep", "alpha_sweep", "local_learning", "audit"):
        assert grid in out
    audit_line = next(line for line in out.splitlines() if line.startswith("audit "))
    assert audit_line.split()[-1] == f"0/{len(grids.audit())}"      # audits: none stored here
    assert next(line for line in out.splitlines() if line.startswith("deep ")).endswith(" -")
    assert cli.main(["status", "--results", str(tmp_path)]) == 0
    assert "CPU h to go" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "--results", str(tmp_path)])       # run needs a grid


def test_show_and_status_tell_every_run_of_a_grid_apart(capsys):
    from powerlaw_lib import grids
    from powerlaw_lib.config import describe, varying_fields

    configs = grids.shallow()
    varying = varying_fields(configs)
    assert {"batch_norm", "beta", "optimizer", "lr", "seed"} <= set(varying)
    assert "hidden" not in varying and "dataset" not in varying
    assert len({describe(c, varying) for c in configs}) == len(configs)
    assert cli.main(["show", "shallow"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    described = [line.split("  ", 2)[2] for line in lines]
    assert len(described) == len(configs) == len(set(described))
