"""The model cache: trained weights of every run, keyed by the training part of its config.

A run's result (`store.Result`) holds what was measured; its trained weights go here, so a
new evaluation (another attack, a finer ε grid, the robustness audit) loads the model
instead of retraining it. One file per trained model, ``<folder>/<training_key>.pt``,
written atomically; the folder is git-ignored (weights are large and reproducible).
Configs that differ only in evaluation settings share one cached model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import RunConfig


class ModelCache:
    """A folder of trained weights, ``<path>/<config.training_key>.pt``.

    >>> cache = ModelCache("data/models")
    >>> cache.save(config, model, history)
    >>> history = cache.load(config, model)   # None when not cached
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def path_for(self, config: RunConfig) -> Path:
        return self.path / f"{config.training_key}.pt"

    def __contains__(self, config: RunConfig) -> bool:
        return self.path_for(config).exists()

    def save(self, config: RunConfig, model: nn.Module, history: list[dict[str, float]]
             ) -> Path:
        """Write the weights (and buffers) of `model` trained as `config` says, atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path_for(config)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        torch.save({"training_key": config.training_key, "training": config.training_dict(),
                    "state_dict": model.state_dict(), "history": history}, tmp)
        os.replace(tmp, target)
        return target

    def load(self, config: RunConfig, model: nn.Module) -> list[dict[str, Any]] | None:
        """Load the cached weights of `config` into `model`; its training history, or None."""
        p = self.path_for(config)
        if not p.exists():
            return None
        blob = torch.load(p, weights_only=True)
        if blob.get("training_key") != config.training_key:
            raise ValueError(f"{p} holds another model (training key "
                             f"{blob.get('training_key')}, expected {config.training_key})")
        model.load_state_dict(blob["state_dict"])
        return blob["history"]
