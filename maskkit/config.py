"""Typed options: dataclasses settable from Python and from ``key=value`` strings.

Every strategy and codec declares its options as a dataclass (``Config``). The CLI passes
``--strategy-opt key=value`` strings here; the values are converted to the field's type
and checked, and an unknown key or a bad value raises :class:`ConfigError` naming the
option, the owner and the valid choices.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def parse_bool(value: Any, what: str) -> bool:
    """A bool from ``True``/``False`` or a string (``true/false, yes/no, on/off, 1/0``, any case);
    anything else is a :class:`ConfigError` saying that ``what`` expects true or false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{what} expects true or false, got {value!r}")


def _convert(value: Any, tp: Any, key: str, owner: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, owner)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{owner}: bad value {value!r} for option '{key}'")
    if origin is typing.Literal:
        for arg in args:
            if value == arg or (isinstance(value, str) and str(arg) == value):
                return arg
        raise ConfigError(f"{owner}: option '{key}' must be one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        conv = [_convert(v.strip() if isinstance(v, str) else v, inner, key, owner) for v in items]
        return tuple(conv) if origin is tuple else conv
    if tp is bool:
        return parse_bool(value, f"{owner}: option '{key}'")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{owner}: option '{key}' expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"{owner}: option '{key}' expects an integer, got {value!r}") from None
    if tp is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, (int, float)) else float(str(value))
        except ValueError:
            raise ConfigError(f"{owner}: option '{key}' expects a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{owner}: option '{key}' expects a finite number, got {value!r}")
        return number
    if tp is str:
        return str(value)
    return value


def check_finite(obj: Any, owner: str = "") -> None:
    """Every float field of dataclass ``obj`` (and of the dataclasses in it) is a finite number,
    else a :class:`ConfigError` naming the field (``nan``/``inf`` pass every ``<``/``>`` check)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{owner}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_finite(value, f"{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")


def parse_kv(pairs: Iterable[str], owner: str = "option") -> dict[str, str]:
    """Split ``["a=1", "b=x"]`` into a dict; a string without ``=`` is an error."""
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"{owner}: expected key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def parse_named_kv(items: Iterable[str], owner: str = "option") -> dict[str, dict[str, str]]:
    """``["temporal:segment=100", "temporal:fade=5"]`` -> ``{"temporal": {"segment": "100", "fade":
    "5"}}`` (options of several named things on one command line)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, kv = item.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"{owner}: expected NAME:key=value, got {item!r}")
        out.setdefault(name.strip(), {}).update(parse_kv([kv], owner=f"{owner} {name.strip()}"))
    return out


def _check_range(f: dataclasses.Field[Any], val: Any, owner: str, given: bool) -> None:
    """``val`` within field ``f``'s ``min``/``max`` metadata, or a :class:`ConfigError` naming it."""
    meta = f.metadata
    for bound, bad, word in (("min", lambda v, b: v < b, ">="), ("max", lambda v, b: v > b, "<=")):
        if val is None or bound not in meta or not bad(val, meta[bound]):
            continue
        if given:
            raise ConfigError(f"{owner}: option '{f.name}' must be {word} {meta[bound]}, got {val}")
        raise ConfigError(f"{owner}: the default of option '{f.name}' is {val!r}, but it must be {word} "
                          f"{meta[bound]} (a fault in the declaration of {owner}; pass the option explicitly "
                          f"until it is fixed)")


def build_config(cls: type[C], options: Mapping[str, Any] | Iterable[str] | None = None,
                 owner: str | None = None) -> C:
    """Build dataclass ``cls`` from a mapping or ``key=value`` strings, converting and checking.

    Fields may define ``metadata={"help": ..., "min": ..., "max": ...}``; ``min``/``max`` are
    enforced, on the defaults as well as on the given values. A dataclass may also define
    ``validate(self)`` raising :class:`ConfigError`.
    """
    owner = owner or cls.__name__
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        options = parse_kv(options, owner)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        key = key.replace("-", "_")
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"{owner}: unknown option '{key}'. Valid options: {valid}")
        val = _convert(value, hints[key], key, owner)
        _check_range(fields[key], val, owner, given=True)
        kwargs[key] = val
    cfg = cls(**kwargs)
    for key, f in fields.items():  # the defaults too: a bad one would surface only at load time
        if key not in kwargs:
            _check_range(f, getattr(cfg, key), owner, given=False)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def describe_config(cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` rows for ``maskkit strategies show``; the help ends with
    the option's range when it has ``min`` / ``max``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        tp = hints[f.name]
        tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        help_text = f.metadata.get("help", "")
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        bounds = (f"{lo} to {hi}" if lo is not None and hi is not None else
                  f">= {lo}" if lo is not None else f"<= {hi}" if hi is not None else "")
        if bounds:
            help_text = f"{help_text} ({bounds})" if help_text else f"({bounds})"
        rows.append((f.name, tname, default, help_text))
    return rows


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass, safe to store in a checkpoint."""
    return dataclasses.asdict(cfg)
