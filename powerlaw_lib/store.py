"""`Result` and `ResultStore`: one JSON file per finished run, keyed by its config hash.

Files are written atomically (temporary file in the same folder, fsync, `os.replace`), so
the store never holds a half-written result, and an existing result is never overwritten by
a different one. Per-epoch training checkpoints live beside the results in a `.checkpoints/`
sub-folder (git-ignored): they let a killed run resume, and are deleted once the result is
written.
"""

from __future__ import annotations

import json
import fcntl
import os
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import RunConfig

SCHEMA_VERSION = 1


@dataclass
class Result:
    """A finished run: its config, scalar metrics, curves, spectra and provenance.

    `metrics` holds scalars (e.g. ``clean_accuracy``, ``alpha_layer3``); `curves` holds
    accuracy curves over the config's grids (``fgsm``, ``pgd``, ``noise``); `spectra` the
    test-set eigenspectrum of each hidden layer (``layer1`` ...); `sensitivity` the maps
    dλ_n/dx (nested lists [image][n][C][H][W]); `history` one dict per epoch; `weights`
    the learned weights of a sample of hidden units (local-learning runs).
    """

    config: RunConfig
    metrics: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    spectra: dict[str, list[float]] = field(default_factory=dict)
    sensitivity: list = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Learned weights of a sample of hidden units, ``{"units": [...], "weights":
    #: [unit][C][H][W]}`` (local-learning runs; empty otherwise, and then not written).
    weights: dict[str, list] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.config.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "key": self.key,
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "curves": self.curves,
            "spectra": self.spectra,
            "sensitivity": self.sensitivity,
            "history": self.history,
            "provenance": self.provenance,
            **({"weights": self.weights} if self.weights else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        cfg = RunConfig.from_dict(d["config"])
        if d.get("key") not in (None, cfg.key):
            raise ValueError(f"result key {d['key']} does not match its config (hash {cfg.key})")
        return cls(cfg, d["metrics"], d.get("curves", {}), d.get("spectra", {}),
                   d.get("sensitivity", []), d.get("history", []), d.get("provenance", {}),
                   d.get("weights", {}))


class ResultStore:
    """A folder of results, ``<path>/<config key>.json``.

    >>> store = ResultStore("data/results")
    >>> store.missing(configs)        # configs without a result
    >>> store.get(config)             # Result or None
    >>> [r.metrics for r in store]    # every stored result
    """

    def __init__(self, path: str | os.PathLike, models: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        #: Folder of the model cache (`model_cache.ModelCache`): `models`; by default a
        #: `models` folder beside a folder named `results` (``data/results`` ->
        #: ``data/models``), else a `.models` folder inside the store, so that two
        #: unrelated stores never share cached models.
        if models is not None:
            self.models_path = Path(models)
        elif self.path.name == "results":
            self.models_path = self.path.parent / "models"
        else:
            self.models_path = self.path / ".models"
        #: Folder of the audits of these results (`audits.AuditStore`): an `audits` folder
        #: beside a folder named `results`, else an `audits` folder inside the store.
        self.audits_path = (self.path.parent / "audits" if self.path.name == "results"
                            else self.path / "audits")

    # --- paths ------------------------------------------------------------------------------
    def result_path(self, config: RunConfig) -> Path:
        return self.path / f"{config.key}.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / ".checkpoints"

    def checkpoint_path(self, config: RunConfig) -> Path:
        return self.checkpoint_dir / f"{config.key}.pt"

    @property
    def failure_dir(self) -> Path:
        return self.path / ".failures"

    @property
    def lock_dir(self) -> Path:
        return self.path / ".locks"

    @contextmanager
    def run_lock(self, config: RunConfig) -> Iterator[None]:
        """Hold the exclusive lock of `config` (``.locks/<key>.lock``) for a `with` block.

        Every process that trains or evaluates `config` into this store holds it, so two
        workers given the same config never both run it: the second waits, then finds the
        result stored. It is an advisory `flock`, released by the kernel when its process
        dies (a killed worker leaves no stale lock); it needs a file system with working
        `flock` between the machines (local disks, NFSv4, Lustre and BeeGFS do).
        """
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / f"{config.key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- failures ---------------------------------------------------------------------------
    def record_failure(self, config: RunConfig, error: BaseException) -> Path:
        """Record that `config` raised `error` (``.failures/<key>.json``), until it succeeds."""
        self.failure_dir.mkdir(parents=True, exist_ok=True)
        target = self.failure_dir / f"{config.key}.json"
        record = {"key": config.key, "label": config.label, "error": type(error).__name__,
                  "message": str(error), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "traceback": "".join(traceback.format_exception(error))[-4000:],
                  "config": config.to_dict()}
        atomic_write_text(target, json.dumps(record, indent=1) + "\n")
        return target

    def failure(self, config: RunConfig) -> dict | None:
        """The recorded failure of `config`, or None."""
        p = self.failure_dir / f"{config.key}.json"
        return json.loads(p.read_text()) if p.exists() else None

    # --- queries ----------------------------------------------------------------------------
    def __contains__(self, config: RunConfig) -> bool:
        return self.result_path(config).exists()

    def get(self, config: RunConfig) -> Result | None:
        p = self.result_path(config)
        if not p.exists():
            return None
        result = Result.from_dict(json.loads(p.read_text()))
        if result.config != config:
            raise ValueError(f"{p} holds a different config than requested (hash collision?)")
        return result

    def missing(self, configs: Iterable[RunConfig]) -> list[RunConfig]:
        return [c for c in configs if c not in self]

    def __iter__(self) -> Iterator[Result]:
        if not self.path.exists():
            return
        for p in sorted(self.path.glob("*.json")):
            yield Result.from_dict(json.loads(p.read_text()))

    def __len__(self) -> int:
        return len(list(self.path.glob("*.json"))) if self.path.exists() else 0

    def trained_like(self, config: RunConfig) -> list[Result]:
        """The stored results trained exactly like `config` (same training key), whatever
        their evaluation settings; `config`'s own result among them if stored."""
        return [r for r in self if r.config.training_key == config.training_key]

    @property
    def superseded_dir(self) -> Path:
        return self.path / "superseded"

    def superseded(self) -> Iterator[Result]:
        """Every result superseded by a retrained run (`supersede`), oldest file name first."""
        if not self.superseded_dir.exists():
            return
        for p in sorted(self.superseded_dir.glob("*.json")):
            yield Result.from_dict(json.loads(p.read_text()))

    def replacements(self, configs: Iterable[RunConfig]) -> list[tuple[Result, Result]]:
        """(superseded result, its replacement) for every superseded result trained like a
        stored config of `configs` (same training key): the replacement is that config's
        stored result, the same network's. Oldest superseded file first."""
        stored: dict[str, RunConfig] = {}
        for c in configs:
            if c in self:
                stored.setdefault(c.training_key, c)
        return [(old, self.get(stored[old.config.training_key])) for old in self.superseded()
                if old.config.training_key in stored]

    # --- writing ----------------------------------------------------------------------------
    def supersede(self, config: RunConfig, note: dict[str, Any]) -> Path:
        """Move the stored result of `config` to ``superseded/<key>-<finished>.json``.

        Used only when its network, retrained from the same config and seed, did not
        reproduce its training history (`experiments.retrain`): the result stays readable
        (`superseded()`, with `note` as its ``provenance["superseded"]``) and in the
        repository's history, and the config's new result takes its place. The archive copy
        is written before the original is removed, so nothing is lost if this is killed.
        """
        source = self.result_path(config)
        data = json.loads(source.read_text())
        data["provenance"] = {**data.get("provenance", {}), "superseded": note}
        stamp = str(data["provenance"].get("finished", "unknown")).replace(":", "")
        self.superseded_dir.mkdir(parents=True, exist_ok=True)
        target = self.superseded_dir / f"{config.key}-{stamp}.json"
        atomic_write_text(target, json.dumps(data, indent=1, allow_nan=False) + "\n")
        source.unlink()
        return target

    def supersede_audits(self, config: RunConfig, note: dict[str, Any]) -> list[str]:
        """Move the audits of `config` (``<audits_path>/<key>-<spec>.json``, see
        `audits.AuditStore`) to ``<audits_path>/superseded/``, each with `note` as its
        ``"superseded"`` entry, and return their file names. Called with `supersede`: an
        audit attacked the network that a retraining replaced, so it must not stand beside
        the new result. The archive name adds the audit's finishing time (else the note's),
        so a run superseded twice keeps both; each archive copy is written before its
        original is removed."""
        moved = []
        for source in sorted(self.audits_path.glob(f"{config.key}-*.json")):
            data = json.loads(source.read_text())
            data["superseded"] = note
            finished = (data.get("provenance") or {}).get("finished") or note.get("when")
            stamp = str(finished or "unknown").replace(":", "")
            target = self.audits_path / "superseded" / f"{source.stem}-{stamp}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(data, indent=1, allow_nan=False) + "\n")
            source.unlink()
            moved.append(source.name)
        return moved

    def put(self, result: Result) -> Path:
        """Write `result` atomically. Refuses to replace an existing, different result."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.result_path(result.config)
        text = json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
        if target.exists():
            raise FileExistsError(f"{target} exists: results are never overwritten "
                                  "(delete the file to rerun that config)")
        atomic_write_text(target, text)
        (self.failure_dir / f"{result.key}.json").unlink(missing_ok=True)  # it succeeded now
        return target


def atomic_write_text(target: Path, text: str) -> None:
    """Write text to `target` via a temporary file in the same folder and `os.replace`."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
