"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class _Finite(click.ParamType):
    """Refuses ``nan`` (and ``inf`` unless ``allow_inf``), which click's float types accept."""

    allow_inf = False

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and (math.isnan(rv) or (math.isinf(rv) and not self.allow_inf)):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class FiniteFloatRange(_Finite, click.FloatRange):
    """A finite float within optional bounds, as :class:`click.FloatRange`. ``allow_inf``:
    ``inf`` is a value the option gives a meaning (no limit); ``nan`` never is."""

    def __init__(self, *args: Any, allow_inf: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_inf = allow_inf


class FiniteFloat(_Finite, click.types.FloatParamType):
    """Any finite float (``type=FINITE`` instead of ``type=float``): no range shown in --help."""


FINITE = FiniteFloat()
