"""Audits as stored results: the AutoAttack-grade audit of one trained run, kept on disk.

An audit (:func:`powerlaw_lib.audit.audit_accuracy`: FGSM, the papers' PGD-40, APGD-CE,
APGD-T, FAB-T and Square, worst case per image) and its gradient-masking checklist
(:func:`powerlaw_lib.audit_checks.masking_checklist`) run on the trained model of a stored
run, on a fixed random subset of its test images (the same images for every run with the
same test set). The model comes from the model cache; a run whose model is not cached is
retrained deterministically first, and its training history must match the stored one
(`experiments.trained_model`). Nothing is retrained just to audit it when it is cached.

Each audit is written atomically to ``<audits>/<run key>-<spec key>.json``: the run's
config, the audit's settings (:class:`AuditSpec`), every attack's accuracy at every ε, the
worst case, the per-image outcomes (one "0"/"1" string per attack and ε), the checklist's
numbers and verdicts, and the seconds it took. Chapters read them with :class:`AuditStore`
and never run attacks at build time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .audit import ATTACKS, audit_accuracy
from .audit_checks import CHECKS, masking_checklist
from .config import RunConfig
from .data import subset
from .experiments import load_data, provenance, trained_model
from .store import ResultStore
from .validation import check_field, is_int

__all__ = ["AUDIT_SUBSET_SEED", "AuditNotAllowedError", "AuditRecord", "AuditSpec", "AuditStore",
           "audit_all", "audit_run", "stored_audits"]

#: Seed of the fixed random subset of test images an audit attacks.
AUDIT_SUBSET_SEED = 11


@dataclass(frozen=True)
class AuditSpec:
    """How a run is audited: ε grid, images, attack budgets (AutoAttack's by default)."""

    eps: tuple[float, ...] = (0.05, 0.1)   # L∞ radii (pixel units)
    images: int = 1000                      # fixed random test images (AUDIT_SUBSET_SEED)
    attacks: tuple[str, ...] = ATTACKS      # members of the ensemble
    steps: int = 100                        # APGD-CE, APGD-T, FAB-T iterations (AutoAttack: 100)
    n_queries: int = 5000                   # Square's queries per image (AutoAttack: 5,000)
    n_targets: int | None = None            # target classes of APGD-T / FAB-T; None: all others
    large_eps: float = 0.5                  # ε of the unbounded-attack check
    seed: int = 0                           # randomness of the attacks and of the noise check

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", tuple(float(e) for e in self.eps))
        object.__setattr__(self, "attacks", tuple(self.attacks))
        check_field(len(self.eps) >= 1 and all(0 < e <= 1 for e in self.eps)
                    and list(self.eps) == sorted(set(self.eps)), "eps",
                    "increasing distinct values in (0, 1]", self.eps)
        check_field(is_int(self.images) and self.images >= 1, "images", "an integer >= 1",
                    self.images)
        check_field(len(self.attacks) >= 1 and set(self.attacks) <= set(ATTACKS)
                    and len(set(self.attacks)) == len(self.attacks), "attacks",
                    f"distinct names from {ATTACKS}", self.attacks)
        check_field(is_int(self.steps) and self.steps >= 1, "steps", "an integer >= 1", self.steps)
        check_field(is_int(self.n_queries) and self.n_queries >= 1, "n_queries",
                    "an integer >= 1", self.n_queries)
        check_field(self.n_targets is None or (is_int(self.n_targets) and self.n_targets >= 1),
                    "n_targets", "None or an integer >= 1", self.n_targets)
        check_field(0 < self.large_eps <= 1, "large_eps", "0 < large_eps <= 1", self.large_eps)
        check_field(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def key(self) -> str:
        """12 hex digits of the SHA-256 of the spec's canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class AuditRecord:
    """A finished audit of one run (see the module docstring for the fields)."""

    config: RunConfig
    spec: AuditSpec
    accuracy: dict[str, list[float]]        # attack -> accuracy at each ε
    robust_accuracy: list[float]            # worst case over the attacks, at each ε
    clean_accuracy: float                   # on the audited images
    outcomes: dict[str, list[str]]          # attack -> per ε, "0"/"1" per image (1: correct)
    checklist: dict[str, Any]               # the masking checklist's numbers and verdicts
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.config.key}-{self.spec.key}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "config": self.config.to_dict(), "spec": self.spec.to_dict(),
                "accuracy": self.accuracy, "robust_accuracy": self.robust_accuracy,
                "clean_accuracy": self.clean_accuracy, "outcomes": self.outcomes,
                "checklist": self.checklist, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditRecord":
        spec = d["spec"]
        record = cls(RunConfig.from_dict(d["config"]),
                     AuditSpec(**{**spec, "eps": tuple(spec["eps"]),
                                  "attacks": tuple(spec["attacks"])}),
                     d["accuracy"], d["robust_accuracy"], d["clean_accuracy"], d["outcomes"],
                     d["checklist"], d.get("provenance", {}))
        if d.get("key") not in (None, record.key):
            raise ValueError(f"audit key {d['key']} does not match its config and spec "
                             f"({record.key})")
        return record

    def correct(self, attack: str) -> np.ndarray:
        """[E, N] bool: True where the image stayed correct under ``attack``."""
        return np.array([[c == "1" for c in row] for row in self.outcomes[attack]], dtype=bool)

    def overstatement(self, attack: str = "pgd") -> list[float]:
        """At each ε: accuracy under ``attack`` minus the worst case over the ensemble (a
        fraction, >= 0): how far that attack alone overstates robustness."""
        return [a - w for a, w in zip(self.accuracy[attack], self.robust_accuracy)]

    def strongest(self, i: int, exclude: Sequence[str] = ("fgsm", "pgd")) -> str:
        """The attack (outside ``exclude``, by default the ensemble's own) with the lowest
        accuracy at the ``i``-th ε."""
        return min((a for a in self.accuracy if a not in exclude),
                   key=lambda a: self.accuracy[a][i])


class AuditStore:
    """A folder of audits, ``<path>/<run key>-<spec key>.json``.

    An audit attacks a trained network, not one evaluation of it. Given `results` (the
    `ResultStore` the audited runs live in), a stored config without an audit of its own
    takes the audit of a stored config of the same training key (`RunConfig.training_key`:
    the same network, evaluated with other settings, e.g. another strength-check sample).
    That is sound because the stored results of one training key share their network:
    `experiments.run` refuses a retraining that does not reproduce the stored history, and
    a replacement supersedes every result of the key together with its audits
    (`ResultStore.supersede`). Such a record is returned relabelled with the asked config;
    its provenance's ``"audited_as"`` names the key of the config it was run on.
    """

    def __init__(self, path: str | os.PathLike, results: ResultStore | None = None) -> None:
        self.path = Path(path)
        self.results = results

    def file(self, config: RunConfig, spec: AuditSpec) -> Path:
        return self.path / f"{config.key}-{spec.key}.json"

    def get(self, config: RunConfig, spec: AuditSpec) -> AuditRecord | None:
        """The audit of `config`'s network under `spec`: its own, else (with `results`, for a
        stored `config`) that of a stored config of the same training key; else None."""
        path = self.file(config, spec)
        if path.exists():
            return _read_audit(path)
        if self.results is None or config not in self.results:
            return None
        for other in sorted(self.path.glob(f"*-{spec.key}.json")):
            record = _read_audit(other)
            if (record.config.training_key == config.training_key
                    and record.config in self.results):
                return dataclasses.replace(
                    record, config=config,
                    provenance={**record.provenance, "audited_as": record.config.key})
        return None

    def put(self, record: AuditRecord) -> Path:
        """Write atomically: a temporary file moved into place."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.file(record.config, record.spec)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    def missing(self, configs: list[RunConfig], spec: AuditSpec) -> list[RunConfig]:
        return [c for c in configs if self.get(c, spec) is None]


def _read_audit(path: Path) -> AuditRecord:
    return AuditRecord.from_dict(json.loads(path.read_text()))


def stored_audits(configs: Sequence[RunConfig], audits: AuditStore,
                  spec: AuditSpec | None = None, store: ResultStore | None = None
                  ) -> dict[str, AuditRecord]:
    """The stored audits of `configs` under `spec` (default: `AuditSpec()`, the audit
    chapter's), by config key; configs without one are left out. Nothing is run.

    With `store` (or an `audits` that knows its results), a stored config without an audit
    of its own takes that of its training twin (see `AuditStore`)."""
    spec = spec or AuditSpec()
    if store is not None:
        audits = AuditStore(audits.path, store)
    found = {c.key: audits.get(c, spec) for c in configs}
    return {k: r for k, r in found.items() if r is not None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def audit_run(config: RunConfig, spec: AuditSpec, store: ResultStore, audits: AuditStore, *,
              progress: bool = True) -> AuditRecord:
    """The audit of ``config``'s trained model: from ``audits``, else run now and stored.

    The model comes from the model cache of ``store`` (retrained deterministically, with
    its history checked against the stored run, when it is not cached). The images are a
    fixed random subset of ``spec.images`` test images (:data:`AUDIT_SUBSET_SEED`).
    """
    found = audits.get(config, spec)
    if found is not None:
        return found
    t0 = time.perf_counter()
    model, _, train_seconds, _ = trained_model(config, store, progress=progress)
    model.eval()
    _, _, x_test, y_test = load_data(config)
    x, y = subset(x_test, y_test, min(spec.images, len(x_test)), seed=AUDIT_SUBSET_SEED)
    t1 = time.perf_counter()
    if progress:
        print(f"  auditing {config.label}: {len(x)} images, ε {list(spec.eps)}", flush=True)
    result = audit_accuracy(model, x, y, spec.eps, attacks=spec.attacks, seed=spec.seed,
                            steps=spec.steps, n_queries=spec.n_queries, n_targets=spec.n_targets)
    report = masking_checklist(model, x, y, result, large_eps=spec.large_eps, seed=spec.seed)
    checklist = {name: _jsonable(getattr(report, name))
                 for name in (f.name for f in dataclasses.fields(report))}
    checklist["failed"] = list(report.failed)
    seconds = {"train_this_session": train_seconds, "audit": time.perf_counter() - t1,
               "total": time.perf_counter() - t0}
    record = AuditRecord(
        config, spec,
        accuracy={a: [float(v) for v in result.accuracy[a]] for a in result.attacks},
        robust_accuracy=[float(v) for v in result.robust_accuracy],
        clean_accuracy=float(result.clean.mean()),
        outcomes={a: ["".join("1" if c else "0" for c in row) for row in result.correct[a]]
                  for a in result.attacks},
        checklist=checklist,
        provenance={**provenance(seconds), "projected": {a: _jsonable(v) for a, v in
                                                          result.projected.items()},
                    "checks": list(CHECKS)})
    audits.put(record)
    return record


class AuditNotAllowedError(RuntimeError):
    """Audits are missing from the store and running them was not allowed."""


def audit_all(pairs: list[tuple[RunConfig, AuditSpec]], store: ResultStore, audits: AuditStore,
              *, allow: bool = False, progress: bool = True) -> list[AuditRecord]:
    """The audits of ``pairs`` (run, spec), in order: stored ones read, missing ones run.

    Without ``allow``, missing audits raise `AuditNotAllowedError` naming them (a chapter
    never attacks at build time unless asked to).
    """
    missing = [(c, s) for c, s in pairs if audits.get(c, s) is None]
    if missing and not allow:
        names = "\n".join(f"  {c.label} ({c.key}-{s.key})" for c, s in missing)
        raise AuditNotAllowedError(
            f"{len(missing)} audit(s) missing from {audits.path}:\n{names}\nrun them with "
            "powerlaw_lib.audits.audit_run (or allow it, e.g. allow_training=True in a chapter)")
    return [audit_run(c, s, store, audits, progress=progress) for c, s in pairs]
