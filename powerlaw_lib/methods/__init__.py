"""The registry of training methods: one module per method, one line per method below.

Everything that depends on the method -- `RunConfig` validation, run labels, the penalty in
the training loop, method keys and group labels in `analysis`, colours in `plotting`, the
command line -- asks this registry (`get(name)`); nothing else branches on
`RunConfig.regularizer`. To add a method, write a module with a `Method` subclass (and its
`Penalty`) and register it here.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from . import adversarial, jacobian, none, slope, spectral
from .base import FIELD_SYMBOLS, METHOD_FIELDS, Method, Penalty, format_value
from .layered import LayerPenalty, refresh_eigenvectors

__all__ = ["Method", "Penalty", "LayerPenalty", "METHOD_FIELDS", "FIELD_SYMBOLS", "get",
           "names", "register", "registered", "unregister", "build_penalty", "format_value",
           "refresh_eigenvectors", "all_methods"]

_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method` under `method.name`; its fields must be among `METHOD_FIELDS`."""
    if not method.name or not method.label:
        raise ValueError(f"{method!r}: a method needs a name and a label")
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is already registered")
    if method.label.lower() in {m.label.lower() for m in _REGISTRY.values()}:
        raise ValueError(f"a method labelled {method.label!r} is already registered")
    unknown = set(method.fields) - set(METHOD_FIELDS)
    if unknown:
        raise ValueError(f"{method!r} reads unknown fields {sorted(unknown)}; "
                         f"allowed: {METHOD_FIELDS}")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


@contextmanager
def registered(method: Method) -> Iterator[Method]:
    """Register `method` for the duration of a `with` block (tests, experiments)."""
    register(method)
    try:
        yield method
    finally:
        unregister(method.name)


def names() -> tuple[str, ...]:
    """Registered method names, in registration order."""
    return tuple(_REGISTRY)


def all_methods() -> tuple[Method, ...]:
    return tuple(_REGISTRY.values())


def get(name: str) -> Method:
    """The method registered as `name` (its `RunConfig.regularizer` value) or labelled so."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for method in _REGISTRY.values():
        if str(name).lower() == method.label.lower():
            return method
    raise ValueError(f"unknown method {name!r}: one of {names()}")


def build_penalty(config) -> Penalty:
    """The penalty of `config`'s method, fresh for one run."""
    return get(config.regularizer).penalty(config)


register(none.METHOD)
register(spectral.METHOD)
register(slope.METHOD)
register(slope.MSE_METHOD)
register(jacobian.METHOD)
register(adversarial.METHOD)
