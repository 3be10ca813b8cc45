"""Options checked at the boundary: every front end validates its keywords here.

An options dataclass (``ALSOptions``, ``GCPOptions``, ...) declares each
option's type in its annotation; :func:`validated` checks a dict of keywords
against it before the method sees them:

- ``int``: an integer (``True`` is not one); ``float``: a real number, finite;
  ``bool``: ``True``/``False``; ``str``, ``list``, ``dict``, ...: that type;
  ``None`` only where the annotation or the default allows it;
- numbers are ``>= 0`` unless the field's ``metadata`` says otherwise;
- a list or dict option whose annotation also allows a number
  (``l2: float | dict``, ``max_rank: int | list``) holds numbers checked the same way.

Ranges and choices go in ``dataclasses.field(metadata=...)``, with keys
``min``/``max`` (inclusive), ``above``/``below`` (exclusive), ``choices``,
``finite`` (False lets inf/NaN through) and ``check`` (a function of the value
returning None or what the value must be). Options with the same name mean
the same thing in every method (``seed``, ``optimize``), so their rules are in
:data:`SHARED` once::

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Demo:
    ...     sweeps: int = field(default=10, metadata={"min": 1})
    ...     tol: float = 1e-9
    >>> validated(Demo, {"sweeps": 3}, "demo")
    Demo(sweeps=3, tol=1e-09)
    >>> validated(Demo, {"sweeps": "10"}, "demo")
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: demo: option sweeps must be an integer >= 1, got '10' (str)
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Callable

import numpy as np

from tnc.errors import TncError


def _check_optimize(value) -> str | None:
    from tnc.engine.plan import OPTIMIZERS
    if isinstance(value, str):
        return None if value in OPTIMIZERS else "one of " + ", ".join(map(repr, OPTIMIZERS))
    if value is None or isinstance(value, (bool, numbers.Number)):
        return "a path optimizer name, a contraction path or a PathOptimizer"
    return None


SHARED = {
    "seed": {"min": 0},
    "optimize": {"check": _check_optimize, "type": object},
    "progress": {"type": bool},
}


def validated(kind: type, options: dict, what: str, spelled: dict | None = None):
    """``kind(**options)`` after checking every name, type and range; errors name ``what``
    and each option as the caller wrote it (``spelled``: field -> an old name used)."""
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise TncError(f"unknown option(s) {', '.join(map(str, unknown))} for {what}, which has "
                       f"no option of that name; its options are {', '.join(fields)}")
    hints = _hints(kind)
    for name, value in options.items():
        field = fields[name]
        rule = {**SHARED.get(name, {}), **field.metadata}
        annotation = rule.get("type", hints.get(name, object))
        check_value((spelled or {}).get(name, name), value, annotation, rule, what,
                    default_is_none=field.default is None)
    return kind(**options)


def check_arguments(function, arguments: dict, rules: dict | None = None) -> None:
    """Check keyword ``arguments`` of ``function`` against its annotations and defaults,
    as :func:`validated` does for a dataclass; ``rules``: name -> metadata-style rule."""
    import inspect
    hints, parameters = _hints(function), inspect.signature(function).parameters
    for name, value in arguments.items():
        rule = {**SHARED.get(name, {}), **(rules or {}).get(name, {})}
        annotation = rule.get("type", hints.get(name, object))
        check_value(name, value, annotation, rule, function.__name__,
                    default_is_none=parameters[name].default is None)


def check_value(name: str, value, annotation, rule: dict | None = None, what: str = "",
                default_is_none: bool = False) -> None:
    """Raise a :class:`TncError` naming option ``name`` unless ``value`` fits ``annotation``
    (a type or a union of types) and ``rule`` (the metadata keys of the module docstring)."""
    rule = rule or {}
    kinds = _members(annotation)
    if default_is_none and type(None) not in kinds:
        kinds = kinds + (type(None),)
    problem = _problem(value, kinds, rule)
    if problem is not None:
        prefix = f"{what}: " if what else ""
        raise TncError(f"{prefix}option {name} must be {problem}, got {value!r} "
                       f"({type(value).__name__})")


def _problem(value, kinds: tuple, rule: dict) -> str | None:
    """None when ``value`` is one of ``kinds`` and keeps ``rule``, else what it must be."""
    wanted = " or ".join(dict.fromkeys(_describe(k, rule) for k in kinds))
    scalar = next((k for k in kinds if k in (int, float)), None)
    for kind in kinds:
        if not _is(value, kind):
            continue
        if kind in (int, float):
            return None if _in_range(value, rule) else wanted
        if scalar is not None and kind in (list, tuple, set, dict):
            items = value.values() if isinstance(value, dict) else value
            bad = [v for v in items if not (_is(v, scalar) and _in_range(v, rule))]
            if bad:
                return f"{wanted} (each entry {_describe(scalar, rule)})"
        if kind is str and "choices" in rule and value not in rule["choices"]:
            return wanted
        if "check" in rule and value is not None:
            return rule["check"](value)
        return None
    return wanted


def _in_range(value, rule: dict) -> bool:
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return not rule.get("finite", True)
    low, high = rule.get("min", 0), rule.get("max")
    return (number >= low and (high is None or number <= high)
            and ("above" not in rule or number > rule["above"])
            and ("below" not in rule or number < rule["below"])
            and ("choices" not in rule or value in rule["choices"]))


def _is(value, kind) -> bool:
    if kind is type(None):
        return value is None
    if kind is object:
        return True
    if kind is bool:
        return isinstance(value, (bool, np.bool_))
    if kind is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if kind is np.ndarray:
        return isinstance(value, (np.ndarray, list, tuple)) or hasattr(value, "__array__")
    if kind is Callable:
        return callable(value)
    if kind is str and isinstance(value, str):
        return True
    return isinstance(kind, type) and isinstance(value, kind)


def _describe(kind, rule: dict) -> str:
    if kind in (int, float):
        name = "an integer" if kind is int else "a finite number" if rule.get(
            "finite", True) else "a number"
        if "choices" in rule:
            return f"{name} in {sorted(rule['choices'])}"
        bounds = [f">= {rule.get('min', 0)}"] if "above" not in rule else [f"> {rule['above']}"]
        if "max" in rule or "below" in rule:
            bounds.append(f"<= {rule['max']}" if "max" in rule else f"< {rule['below']}")
        return f"{name} {' and '.join(bounds)}"
    if kind is type(None):
        return "None"
    if kind is str and "choices" in rule:
        return "one of " + ", ".join(map(repr, rule["choices"]))
    if kind is np.ndarray:
        return "an array"
    if kind is Callable:
        return "a function"
    return f"a {getattr(kind, '__name__', str(kind))}"


def _members(annotation) -> tuple:
    """The types of an annotation: ``int | None`` -> ``(int, NoneType)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(m for a in typing.get_args(annotation) for m in _members(a))
    if annotation is typing.Any:
        return (object,)
    if origin is not None:
        return (Callable,) if origin is Callable else (origin,)
    return (annotation,)


@functools.lru_cache(maxsize=None)
def _hints(kind: type) -> dict:
    try:
        return typing.get_type_hints(kind)
    except Exception:       # pragma: no cover - an annotation that does not resolve
        return {}
