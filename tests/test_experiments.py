"""Real (short) training runs: accuracy, determinism, resumption, store safety, executors."""

from __future__ import annotations

import json

import pytest
import torch

from powerlaw_lib import __main__ as cli
from powerlaw_lib import grids
from powerlaw_lib.config import RunConfig
from powerlaw_lib.experiments import run, run_grid
from powerlaw_lib.store import ResultStore
from powerlaw_lib.training import NonFiniteLossError

pytestmark = pytest.mark.slow

# 2,000 MNIST training images, small evaluation grids: seconds per run on 2 cores.
SMALL = RunConfig(dataset="mnist", hidden=(200,), batch_norm=True, lr=1e-3, batch_size=250,
                  epochs=4, train_subset=2000, test_subset=1000, pgd_subset=200,
                  fgsm_eps=(0.0, 0.05, 0.1), pgd_eps=(0.0, 0.05, 0.1), pgd_steps=10,
                  noise_sigma=(0.0, 0.3), sensitivity_top=3, sensitivity_images=1,
                  strength_eps=(0.05,), strength_restarts=2, strength_steps=20, strength_subset=100)
SPECTRAL = SMALL.replace(regularizer="spectral", reg_layers=(1,), beta=2.0)


@pytest.fixture(scope="module")
def spectral_result(tmp_path_factory):
    return run(SPECTRAL, ResultStore(tmp_path_factory.mktemp("store")), progress=False)


def test_short_spectral_run_learns_and_records_everything(spectral_result):
    r = spectral_result
    m = r.metrics
    assert m["clean_accuracy"] > 0.85
    assert len(r.history) == SPECTRAL.epochs
    assert all(h["penalty"] > 0 for h in r.history)
    assert m["fgsm_accuracy@0"] == pytest.approx(m["clean_accuracy"])
    assert r.curves["pgd"][0] >= r.curves["pgd"][-1]
    assert len(r.spectra["layer1"]) == 200 and "layer1_alpha" in m
    # restarts with more steps are at least as strong as the run's own PGD on the same images
    assert m["strength_restarts_accuracy@0.05"] <= m["strength_pgd_accuracy@0.05"]
    assert 1 <= m["layer1_effective_dim"] <= 200
    sens = torch.tensor(r.sensitivity)
    assert sens.shape == (1, 3, 1, 28, 28) and sens.abs().sum() > 0
    assert r.provenance["torch"] == torch.__version__ and r.provenance["seconds"]["evaluate"] > 0


def test_same_config_gives_identical_result(spectral_result, tmp_path):
    again = run(SPECTRAL, ResultStore(tmp_path), progress=False)
    assert again.metrics == spectral_result.metrics
    assert again.curves == spectral_result.curves
    assert again.spectra == spectral_result.spectra
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in again.history] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in spectral_result.history]


def test_killed_run_resumes_to_the_same_result(spectral_result, tmp_path):
    store = ResultStore(tmp_path)
    assert run(SPECTRAL, store, progress=False, stop_after=2) is None    # "killed" after 2
    assert store.checkpoint_path(SPECTRAL).exists() and SPECTRAL not in store
    resumed = run(SPECTRAL, store, progress=False)
    assert resumed.metrics == spectral_result.metrics
    assert resumed.curves == spectral_result.curves
    assert not store.checkpoint_path(SPECTRAL).exists()


def test_killed_slope_run_resumes_to_the_same_result(tmp_path):
    """The subspace slope penalty cold-starts at every epoch: resuming changes nothing."""
    config = SMALL.replace(regularizer="slope", reg_layers=(1,), alpha=2.0, beta=1.0, epochs=3,
                           batch_size=150, train_subset=1200, batch_norm=False)
    whole = run(config, ResultStore(tmp_path / "a"), progress=False)
    store = ResultStore(tmp_path / "b")
    assert run(config, store, progress=False, stop_after=1) is None
    resumed = run(config, store, progress=False)
    assert resumed.metrics == whole.metrics
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert all(h["penalty"] > 0 for h in whole.history)


def test_new_evaluation_settings_reuse_the_cached_model_without_training(tmp_path, monkeypatch):
    from powerlaw_lib import training

    store = ResultStore(tmp_path / "results")
    first = run(SMALL, store, progress=False)
    assert (tmp_path / "models" / f"{SMALL.training_key}.pt").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(training, "training_step", no_training)
    again = SMALL.replace(pgd_steps=5, pgd_eps=(0.0, 0.1, 0.2), strength_subset=50)
    second = run(again, store, progress=False)
    assert second.key != first.key and second.history == first.history
    assert second.metrics["clean_accuracy"] == first.metrics["clean_accuracy"]
    assert second.provenance["model_from_cache"] and not first.provenance["model_from_cache"]
    assert cli.main(["evaluate", "shallow", "--results", str(store.path), "--cached-only",
                     "--set", "seeds=[0]", "--set", "epochs=1", "--set", "betas=[]",
                     "--set", "no_bn_betas=[]", "--set", "text_lr_check=[]",
                     "--set", "train_subset=1000", "--set", "width=50",
                     "--set", "batch_size=100"]) == 0  # nothing cached: nothing run


def test_a_retrained_model_must_reproduce_the_stored_history(tmp_path):
    from powerlaw_lib.experiments import HistoryMismatchError

    store = ResultStore(tmp_path / "results")
    first = run(SMALL, store, progress=False)
    (tmp_path / "models" / f"{SMALL.training_key}.pt").unlink()   # model not cached
    path = store.result_path(SMALL)
    raw = json.loads(path.read_text())
    raw["history"][0]["loss"] += 1e-3                             # a history it cannot match
    path.write_text(json.dumps(raw))
    with pytest.raises(HistoryMismatchError, match="did not reproduce"):
        run(SMALL.replace(pgd_steps=5), store, progress=False)
    assert SMALL.replace(pgd_steps=5) not in store
    assert not (tmp_path / "models" / f"{SMALL.training_key}.pt").exists()
    assert first.history[0]["loss"] != raw["history"][0]["loss"]


def test_retrain_reproduces_or_supersedes_and_never_loses_a_result(tmp_path):
    from powerlaw_lib.experiments import histories_match, retrain

    store = ResultStore(tmp_path / "results")
    model_file = tmp_path / "models" / f"{SMALL.training_key}.pt"
    first = run(SMALL, store, progress=False)
    other = run(SMALL.replace(pgd_steps=5), store, progress=False)   # same training key
    assert retrain(SMALL, store, progress=False) == "cached"
    model_file.unlink()
    assert retrain(SMALL, store, progress=False) == "reproduced"     # same CPU: same history
    assert store.get(SMALL).to_dict() == first.to_dict() and model_file.exists()

    model_file.unlink()
    path = store.result_path(SMALL)
    raw = json.loads(path.read_text())
    raw["history"][1]["loss"] *= 1.01             # a stored history this machine cannot match
    path.write_text(json.dumps(raw))
    assert retrain(SMALL, store, progress=False) == "replaced"
    archived = {r.key: r for r in store.superseded()}
    assert set(archived) == {SMALL.key, other.key}
    note = archived[SMALL.key].provenance["superseded"]
    assert note["first_different_epoch"] == 2 and "differs from epoch 2" in note["reason"]
    assert archived[SMALL.key].history == raw["history"]             # kept as it was
    new = store.get(SMALL)
    assert histories_match(new.history, first.history)               # the real retraining
    assert [r["key"] for r in new.provenance["replaces"]] == sorted([SMALL.key, other.key])
    assert SMALL.replace(pgd_steps=5) not in store                   # evaluated from the cache:
    again = run(SMALL.replace(pgd_steps=5), store, progress=False)
    assert again.provenance["model_from_cache"] and again.history == new.history
    assert cli.main(["retrain", "shallow", "--results", str(store.path), "--set", "seeds=[0]",
                     "--set", "epochs=1", "--set", "betas=[]", "--set", "no_bn_betas=[]",
                     "--set", "text_lr_check=[]", "--set", "train_subset=1000",
                     "--set", "width=50", "--set", "batch_size=100"]) == 0  # nothing stored


def test_evaluate_replacing_replaces_an_unreproduced_training_and_its_audits(tmp_path):
    from powerlaw_lib.experiments import evaluate_replacing, histories_match

    store = ResultStore(tmp_path / "results")
    first = run(SMALL, store, progress=False)
    audit = store.audits_path / f"{SMALL.key}-spec.json"
    audit.parent.mkdir(parents=True)
    audit.write_text(json.dumps({"run_key": SMALL.key, "worst_case": [0.5]}))
    (tmp_path / "models" / f"{SMALL.training_key}.pt").unlink()      # another session
    path = store.result_path(SMALL)
    raw = json.loads(path.read_text())
    raw["history"][1]["loss"] *= 1.01             # a stored history this machine cannot match
    path.write_text(json.dumps(raw))
    asked = SMALL.replace(pgd_steps=5)             # a new evaluation setting of that training
    assert evaluate_replacing(asked, store, progress=False) == "replaced"
    new, extra = store.get(SMALL), store.get(asked)
    assert [r["key"] for r in new.provenance["replaces"]] == [SMALL.key]
    assert new.provenance["replaces"][0]["audits"] == [audit.name]
    assert extra.provenance["model_from_cache"] and extra.history == new.history
    assert histories_match(new.history, first.history)               # the real retraining
    assert not audit.exists()                      # the audit of the old network is archived
    [archive] = (store.audits_path / "superseded").glob(f"{audit.stem}-*.json")  # stamped
    archived = json.loads(archive.read_text())
    assert archived["worst_case"] == [0.5] and "differs from epoch 2" in archived["superseded"]["reason"]
    assert [r.key for r in store.superseded()] == [SMALL.key]
    [(old, now)] = store.replacements([asked, SMALL])             # paired by training key
    assert old.key == SMALL.key and now.key == asked.key and old.history == raw["history"]
    assert store.replacements([SMALL.replace(seed=3)]) == []       # another training: none
    assert sorted(r.key for r in store.trained_like(SMALL.replace(pgd_steps=9))) == sorted(
        [SMALL.key, asked.key])                    # evaluation settings aside, one network
    assert store.trained_like(SMALL.replace(seed=3)) == []
    assert evaluate_replacing(asked, store, progress=False) == "stored"
    assert evaluate_replacing(SMALL.replace(pgd_steps=7), store, progress=False) == "evaluated"
    with pytest.raises(SystemExit, match="--replace"):
        cli.main(["evaluate", "shallow", "--results", str(store.path), "--replace", "--jobs", "2",
                  "--set", "seeds=[0]", "--set", "epochs=1", "--set", "betas=[]",
                  "--set", "no_bn_betas=[]", "--set", "text_lr_check=[]",
                  "--set", "train_subset=1000", "--set", "width=50", "--set", "batch_size=100"])


def test_store_round_trip_and_no_overwrite(spectral_result, tmp_path):
    store = ResultStore(tmp_path)
    path = store.put(spectral_result)
    assert json.loads(path.read_text())["key"] == SPECTRAL.key
    assert store.get(SPECTRAL).metrics == spectral_result.metrics
    assert store.missing([SPECTRAL, SMALL]) == [SMALL]
    assert [r.key for r in store] == [SPECTRAL.key] and len(store) == 1
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        store.put(spectral_result)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_tampered_result_is_rejected(spectral_result, tmp_path):
    store = ResultStore(tmp_path)
    path = store.put(spectral_result)
    d = json.loads(path.read_text())
    d["config"]["seed"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="does not match"):
        store.get(SPECTRAL)


def test_non_finite_loss_stops_and_stores_nothing(tmp_path, monkeypatch):
    import powerlaw_lib.experiments as ex

    real = ex.load_data

    def corrupt(config):  # one NaN pixel in the training set -> NaN loss in epoch 1
        x_tr, y_tr, x_te, y_te = real(config)
        x_tr = x_tr.clone()
        x_tr[:, 0, 0, 0] = float("nan")
        return x_tr, y_tr, x_te, y_te

    monkeypatch.setattr(ex, "load_data", corrupt)
    store = ResultStore(tmp_path)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        run(SMALL, store, progress=False)
    assert len(store) == 0


def test_run_grid_runs_only_missing_configs(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    cheap = SMALL.replace(epochs=1, hidden=(64,), sensitivity_top=0)
    configs = [cheap.replace(seed=s) for s in (0, 1)]
    run(configs[0], store, progress=False)
    calls = []
    import powerlaw_lib.experiments as ex
    real = ex.run
    monkeypatch.setattr(ex, "run", lambda c, s, **kw: calls.append(c) or real(c, s, **kw))
    results = run_grid(configs, store, progress=False)
    assert calls == [configs[1]]
    assert [r.config for r in results] == configs


def test_a_failing_config_is_recorded_and_the_rest_of_the_grid_runs(tmp_path, monkeypatch,
                                                                     capsys):
    import powerlaw_lib.experiments as ex
    from powerlaw_lib.experiments import GridRunError

    store = ResultStore(tmp_path)
    cheap = SMALL.replace(epochs=1, hidden=(64,), sensitivity_top=0)
    bad, good = cheap.replace(seed=0), cheap.replace(seed=1)
    real = ex.trained_model

    def diverging(config, *args, **kwargs):
        if config == bad:
            raise NonFiniteLossError("loss became nan at epoch 1, batch 3")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(ex, "trained_model", diverging)
    with pytest.raises(GridRunError, match=bad.key) as info:
        run_grid([bad, good], store, progress=False)
    assert [c for c, _ in info.value.failures] == [bad]
    assert good in store and bad not in store
    record = store.failure(bad)
    assert record["error"] == "NonFiniteLossError" and "nan" in record["message"]
    assert record["label"] == bad.label and store.failure(good) is None

    monkeypatch.setattr(ex, "trained_model", real)
    run_grid([bad, good], store, progress=False)      # it succeeds now: the record goes
    assert bad in store and store.failure(bad) is None


def test_training_guard_stops_before_anything_trains_and_lets_cached_models_through(
        tmp_path, monkeypatch):
    import powerlaw_lib.experiments as ex
    from powerlaw_lib.experiments import TrainingNotAllowedError

    store = ResultStore(tmp_path / "results")
    cheap = SMALL.replace(epochs=1, hidden=(64,), sensitivity_top=0)
    configs = [cheap.replace(seed=s) for s in (0, 1)]
    with pytest.raises(TrainingNotAllowedError, match=r"2 run\(s\) .* would be trained"):
        run_grid(configs, store, progress=False, allow_training=False)
    assert len(store) == 0
    run_grid(configs, store, progress=False)                   # trained, models cached
    other_eval = [c.replace(pgd_steps=3) for c in configs]       # evaluation only
    monkeypatch.setattr(ex, "train", lambda *a, **k: pytest.fail("trained"))
    results = run_grid(other_eval, store, progress=False, allow_training=False)
    assert [r.config for r in results] == other_eval


def test_run_grid_on_a_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    store = ResultStore(tmp_path)
    cheap = SMALL.replace(epochs=1, hidden=(64,), sensitivity_top=0, pgd_steps=2)
    configs = [cheap.replace(seed=s) for s in (0, 1)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        results = run_grid(configs, store, executor=client, progress=False)
    assert store.missing(configs) == []
    local = run(configs[0], ResultStore(tmp_path / "local"), progress=False)
    # Workers run 1 torch thread, this process 2: reductions differ in the last bits.
    assert results[0].metrics == pytest.approx(local.metrics, rel=1e-6)


def test_cli_status_and_overrides(tmp_path, capsys):
    assert cli.main(["status", "shallow", "--results", str(tmp_path),
                     "--set", "seeds=[0]", "--set", "betas=[2.0]", "--set", "no_bn_betas=[]",
                     "--set", "text_lr_check=[]"]) == 0
    out = capsys.readouterr().out
    assert "0/2 stored" in out and "2 missing" in out
    with pytest.raises(SystemExit, match="unknown parameter"):
        cli.main(["status", "shallow", "--set", "seedz=[0]"])
    with pytest.raises(SystemExit, match="seeds"):
        cli.main(["status", "shallow", "--set", "seeds=[]"])
    assert len(grids.shallow(seeds=[0], betas=[2.0], no_bn_betas=[], text_lr_check=[])) == 2


def test_evaluation_reports_each_stage_with_the_time_left(capsys):
    from powerlaw_lib.evaluation import evaluate, stage_weights
    from powerlaw_lib.experiments import build, load_data

    config = SMALL.replace(epochs=1, sensitivity_top=2)
    _, _, x_te, y_te = load_data(config)
    evaluate(build(config), config, x_te, y_te, progress=True)
    lines = [l for l in capsys.readouterr().out.splitlines() if "evaluating" in l]
    stages = list(stage_weights(config, len(x_te)))
    assert [l.split("] ")[1].split(" (")[0] for l in lines] == stages
    # no estimate before an attack stage has finished (the spectra stage sets no rate)
    assert "s left" not in lines[0] + lines[1] and all("s left" in l for l in lines[2:])


def test_time_left_comes_from_the_attack_stages_rate_and_refined_work():
    from powerlaw_lib.evaluation import EvaluationProgress, early_stop_work

    times = iter([0.0, 0.0, 50.0, 60.0, 80.0])  # start; spectra took 50 s, FGSM 10, PGD 20
    out = []
    tracker = EvaluationProgress({"spectra": 1.0, "FGSM": 10.0, "PGD": 400.0, "noise": 5.0},
                                 "run", print_fn=lambda s, **_: out.append(s),
                                 clock=lambda: next(times))
    tracker.stage("spectra")
    tracker.stage("FGSM")
    tracker.refine("PGD", 20.0)         # most images broken by FGSM already
    tracker.stage("PGD")
    tracker.stage("noise")
    assert "s left" not in out[1]
    assert out[2].endswith("(60 s so far, about 25 s left)")  # 1 s per unit x (20 + 5)
    assert out[3].endswith("(80 s so far, about 5 s left)")
    with pytest.raises(ValueError, match="PGD"):
        tracker.refine("PGD", 1.0)
    # one check per image and ε, plus the steps of the images the weaker attack left correct
    assert early_stop_work([0.0, 0.1], [0.0, 0.2], [1.0, 0.0], 100, 40) == 100 * (2 + 40 * 1.5)
    assert early_stop_work([0.1], [], [], 10, 40) == 10 * 41


def test_histories_match_to_a_relative_tolerance_and_nothing_looser():
    from powerlaw_lib.experiments import histories_match

    stored = [{"epoch": 1, "loss": 0.541706657409668, "train_accuracy": 0.8381, "seconds": 12.0},
              {"epoch": 2, "loss": 0.3161616399884224, "train_accuracy": 0.9137, "seconds": 3.0}]
    logged = [{"epoch": 1, "loss": 0.5417066663503647, "train_accuracy": 0.8381, "seconds": 9.0},
              {"epoch": 2, "loss": 0.31616163849830625, "train_accuracy": 0.9137, "seconds": 3.5}]
    assert histories_match(stored, logged)          # float32 summation order, seconds aside
    flipped = [dict(logged[0]), {**logged[1], "train_accuracy": 0.9137 - 1 / 60000}]
    assert histories_match(stored, flipped)         # one borderline prediction
    assert not histories_match(stored, [dict(logged[0]), {**logged[1], "train_accuracy": 0.9127}])
    drifted = [dict(logged[0]), {**logged[1], "loss": 0.3161626}]
    assert not histories_match(stored, drifted)      # a different training
    assert not histories_match(stored, logged[:1])
    assert not histories_match(stored, [logged[0], {**logged[1], "penalty": 0.0}])
    assert not histories_match([{"phase": "local"}], [{"phase": "readout"}])


def test_chapter_results_preview_only_the_stored_runs_and_never_train(tmp_path):
    from powerlaw_lib.experiments import TrainingNotAllowedError, chapter_results, provisional_notice
    from powerlaw_lib.store import Result

    store = ResultStore(tmp_path)
    configs = [RunConfig(hidden=(8,), seed=s, epochs=1) for s in range(3)]
    store.put(Result(configs[1], {"clean_accuracy": 0.5}))
    results, trained = chapter_results(configs, store, stored_only=True)
    assert [r.config for r in results] == [configs[1]] and trained == 0
    assert results[0].metrics == {"clean_accuracy": 0.5}
    with pytest.raises(TrainingNotAllowedError):                  # the default: all, or refuse
        chapter_results(configs, store)
    notice = provisional_notice(len(results), len(configs))
    assert notice.startswith(":::{warning}") and "1 of its grid's 3 runs" in notice
    assert "(2 missing)" in notice and provisional_notice(3, 3) == ""
    with pytest.raises(ValueError, match="stored_only: none of the grid's 2 runs"):
        chapter_results([configs[0], configs[2]], store, stored_only=True)
