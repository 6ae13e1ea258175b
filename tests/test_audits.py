"""Audits as stored results (`powerlaw_lib.audits`): run once on the cached model, kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from powerlaw_lib import experiments
from powerlaw_lib.audits import AuditRecord, AuditSpec, AuditStore, audit_run
from powerlaw_lib.config import RunConfig
from powerlaw_lib.store import ResultStore

SMALL = RunConfig(hidden=(32,), batch_norm=False, train_subset=600, test_subset=200,
                  batch_size=100, epochs=2, lr=1e-3, pgd_subset=50, strength_subset=10,
                  fgsm_eps=(0.0, 0.1), pgd_eps=(0.0, 0.1), noise_sigma=(0.0,),
                  strength_eps=(), sensitivity_top=0)
SPEC = AuditSpec(eps=(0.05, 0.1), images=40, steps=5, n_queries=20, n_targets=2, large_eps=0.5)


@pytest.mark.parametrize(("change", "field"), [({"eps": (0.1, 0.05)}, "eps"), ({"eps": ()}, "eps"),
                                               ({"images": 0}, "images"),
                                               ({"attacks": ("pgd", "cw")}, "attacks"),
                                               ({"steps": 0}, "steps"),
                                               ({"n_targets": 0}, "n_targets"),
                                               ({"large_eps": 0.0}, "large_eps")])
def test_bad_audit_settings_name_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        AuditSpec(**{**SPEC.to_dict(), **change})


def test_the_spec_key_changes_with_every_setting():
    keys = {SPEC.key, AuditSpec().key, AuditSpec(eps=(0.1,)).key, AuditSpec(images=500).key,
            AuditSpec(seed=1).key}
    assert len(keys) == 5


def test_an_audit_runs_once_on_the_cached_model_and_is_read_back(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "results")
    result = experiments.run(SMALL, store, progress=False)
    audits = AuditStore(tmp_path / "audits")
    record = audit_run(SMALL, SPEC, store, audits, progress=False)
    assert record.provenance["seconds"]["train_this_session"] == 0.0   # the cached model
    assert audits.file(SMALL, SPEC).exists() and audits.missing([SMALL], SPEC) == []
    raw = json.loads(audits.file(SMALL, SPEC).read_text())
    again = AuditRecord.from_dict(raw)
    assert again.to_dict() == record.to_dict()
    # the worst case is the AND of the per-image outcomes and never above any attack
    robust = np.logical_and.reduce([record.correct(a) for a in SPEC.attacks])   # [E, N]
    np.testing.assert_allclose(robust.mean(1), record.robust_accuracy)
    for attack in SPEC.attacks:
        assert np.all(np.array(record.robust_accuracy) <= np.array(record.accuracy[attack]) + 1e-12)
        assert record.correct(attack).shape == (len(SPEC.eps), SPEC.images)
    assert set(record.checklist["failed"]) <= {"iterative", "black_box", "large_eps", "noise",
                                                "zero_gradient"}
    assert record.clean_accuracy >= max(record.accuracy["pgd"])
    # stored: a second call runs nothing
    monkeypatch.setattr("powerlaw_lib.audits.audit_accuracy",
                        lambda *a, **k: pytest.fail("the stored audit was run again"))
    assert audit_run(SMALL, SPEC, store, audits, progress=False).to_dict() == record.to_dict()
    assert result.metrics["clean_accuracy"] > 0.5


def test_a_tampered_audit_file_is_refused(tmp_path):
    store = ResultStore(tmp_path / "results")
    experiments.run(SMALL, store, progress=False)
    audits = AuditStore(tmp_path / "audits")
    record = audit_run(SMALL, SPEC, store, audits, progress=False)
    raw = record.to_dict()
    raw["spec"]["steps"] = 7
    with pytest.raises(ValueError, match="does not match"):
        AuditRecord.from_dict(raw)


def test_the_local_learning_chapter_audits_its_seed_0_mnist_networks():
    from powerlaw_lib import grids

    pairs = grids.local_learning_audits(grids.local_learning())
    assert len(pairs) == 5 and all(c.dataset == "mnist" and c.seed == 0 for c, _ in pairs)
    assert {c.arch for c, _ in pairs} == {"kh", "mlp"}
    assert sorted(c.beta for c, _ in pairs if c.regularizer == "spectral") == [1.0, 2.0, 5.0]
    assert len({s for _, s in pairs}) == 1 and pairs[0][1] == AuditSpec()
    shared = set(grids.audit_runs())                 # the audit chapter audits the same runs
    assert all(c in shared for c, _ in pairs)
    plain = grids.local_learning_audits(grids.local_learning(), audit_betas=())
    assert len(plain) == 2 and all(c.arch == "kh" or c.method.plain for c, _ in plain)


def test_missing_audits_are_refused_unless_allowed_and_tabled_once_run(tmp_path):
    from powerlaw_lib import tables
    from powerlaw_lib.audits import AuditNotAllowedError, audit_all

    store = ResultStore(tmp_path / "results")
    experiments.run(SMALL, store, progress=False)
    audits = AuditStore(store.audits_path)
    assert audits.path == tmp_path / "audits"
    with pytest.raises(AuditNotAllowedError, match=SMALL.key):
        audit_all([(SMALL, SPEC)], store, audits)
    [record] = audit_all([(SMALL, SPEC)], store, audits, allow=True, progress=False)
    from powerlaw_lib.audits import stored_audits

    found = stored_audits([SMALL, SMALL.replace(seed=5)], audits, SPEC)
    assert list(found) == [SMALL.key] and found[SMALL.key].to_dict() == record.to_dict()
    assert stored_audits([SMALL], audits) == {}                     # another spec: none
    twin = SMALL.replace(strength_sampling="first")                # same network, other sample
    assert stored_audits([twin], audits, SPEC) == {}                # not stored: none
    assert stored_audits([twin], audits, SPEC, store=store) == {}   # not stored: none
    experiments.run(twin, store, progress=False)                    # evaluated, no training
    shared = stored_audits([twin, SMALL.replace(seed=5)], audits, SPEC, store=store)
    assert list(shared) == [twin.key] and shared[twin.key].config == twin
    assert shared[twin.key].provenance["audited_as"] == SMALL.key   # relabelled, source named
    assert shared[twin.key].robust_accuracy == record.robust_accuracy
    assert shared[twin.key].outcomes == record.outcomes
    assert stored_audits([twin], audits, SPEC) == {}                # without the store: own only
    with_results = AuditStore(store.audits_path, store)
    assert with_results.missing([twin, SMALL.replace(seed=5)], SPEC) == [SMALL.replace(seed=5)]
    [shared_record] = audit_all([(twin, SPEC)], store, with_results)   # found: nothing runs
    assert shared_record.config == twin
    assert not with_results.file(twin, SPEC).exists()                # and nothing was written
    table = tables.audit_table({"small": record}).splitlines()
    assert len(table) == 2 + len(SPEC.eps)
    assert table[2].startswith("| small | 0.05 |") and table[0].count("|") == 5 + len(SPEC.attacks)
    checks = tables.audit_checks_table({"small": record}).splitlines()
    assert len(checks) == 3 and checks[2].startswith("| small | ")
    assert checks[2].endswith(f"| {', '.join(record.checklist['failed']) or 'none'} |")
    assert "| PGD-40 |" in table[0] and "| Square |" in table[0]
    narrow = tables.audit_table({"small": record}, ("pgd", "square"), clean=False).splitlines()
    assert narrow[0] == "| network | ε | PGD-40 | Square | worst case |"
    worst = 100 * record.robust_accuracy[0]
    assert narrow[2] == (f"| small | {SPEC.eps[0]:g} | {100 * record.accuracy['pgd'][0]:.1f} | "
                         f"{100 * record.accuracy['square'][0]:.1f} | {worst:.1f} |")
    assert [r.to_dict() for r in audit_all([(SMALL, SPEC)], store, audits)] == [record.to_dict()]


def test_the_command_line_audits_a_chapter_once_its_runs_are_stored(tmp_path, monkeypatch, capsys):
    from powerlaw_lib import __main__ as cli
    from powerlaw_lib import grids

    monkeypatch.setitem(grids.CHAPTER_AUDITS, "shallow", lambda configs: [(SMALL, SPEC)])
    monkeypatch.setitem(grids.CHAPTER_GRIDS, "shallow", lambda: [SMALL])
    results = tmp_path / "results"
    assert cli.main(["audit", "shallow", "--results", str(results)]) == 0
    assert "skipped (run not stored" in capsys.readouterr().out
    assert not (tmp_path / "audits").exists()
    experiments.run(SMALL, ResultStore(results), progress=False)
    assert cli.main(["status", "shallow", "--results", str(results)]) == 0
    assert "0/1 audits stored" in capsys.readouterr().out
    assert cli.main(["audit", "shallow", "--results", str(results), "--limit", "0"]) == 0
    assert not (tmp_path / "audits").exists()
    assert cli.main(["audit", "shallow", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "1 audit(s) of stored runs, 1 to run" in out and f"{SMALL.key}  worst case ε=0.05:" in out
    assert AuditStore(tmp_path / "audits").get(SMALL, SPEC) is not None
    assert cli.main(["status", "shallow", "--results", str(results)]) == 0
    assert "1/1 audits stored" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="has no audits"):
        cli.main(["audit", "deep", "--results", str(results)])


def test_the_audit_chapter_audits_every_shallow_method_the_yardstick_and_local_learning():
    from powerlaw_lib import grids

    pairs = grids.audit()
    assert len({s for _, s in pairs}) == 1 and pairs[0][1] == AuditSpec()
    runs = [c for c, _ in pairs]
    assert len(set(runs)) == len(runs)
    shallow = [c for c in grids.shallow(seeds=(0,)) if not grids.is_text_lr_check(c)]
    assert runs[:len(shallow)] == shallow and len(shallow) == 7
    yard = [c for c in grids.audit_runs() if c.regularizer == "adversarial"]
    assert [c.seed for c in yard] == [0, 1, 2]                         # stored and tabled
    assert [c for c in runs if c.regularizer == "adversarial"] == yard[:1]  # audited: seed 0
    plain = next(c for c in shallow if not c.batch_norm and c.method.plain)
    assert all(c.replace(regularizer="none", adv_eps=0.1, adv_steps=7, adv_step_size=0.025,
                         seed=0, strength_sampling=plain.strength_sampling) == plain
               for c in yard)                                          # only the method differs,
    assert {c.strength_sampling for c in yard} == {"first"}            # and its stored sample
    assert {c.arch for c in runs} == {"mlp", "kh"}                     # local learning's own
    assert grids.audit_runs() == runs + yard[1:]
    assert [c.seed for c, _ in grids.audit(yardstick_audited=(0, 2))
            if c.regularizer == "adversarial"] == [0, 2]
    with pytest.raises(ValueError, match="yardstick_audited"):
        grids.audit(yardstick_seeds=(0,), yardstick_audited=(1,))
    quick = grids.audit(shallow_params={"width": 50, "epochs": 1}, with_local_learning=False,
                        yardstick_seeds=(0,), yardstick_epochs=1, audit_images=20)
    assert all(c.hidden == (50,) for c, _ in quick) and quick[0][1].images == 20
    assert [c.epochs for c, _ in quick if c.regularizer == "adversarial"] == [1]
    with pytest.raises(ValueError, match="shallow_params"):
        grids.audit(shallow_params={"seeds": (1,)})


def test_a_record_says_how_far_one_attack_overstates_the_worst_case_and_which_attack_is_strongest():
    record = AuditRecord(SMALL, SPEC, {"fgsm": [0.6, 0.3], "pgd": [0.5, 0.2], "apgd-ce": [0.5, 0.2],
                                       "apgd-t": [0.45, 0.1], "square": [0.55, 0.15]},
                         [0.4, 0.1], 0.9, {}, {})
    np.testing.assert_allclose(record.overstatement(), [0.1, 0.1])
    np.testing.assert_allclose(record.overstatement("fgsm"), [0.2, 0.2])
    assert record.strongest(0) == "apgd-t" and record.strongest(1) == "apgd-t"
    assert record.strongest(0, exclude=()) == "apgd-t"
    assert record.strongest(1, exclude=("apgd-t",)) == "square"
