"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A float option that must be a finite number (``nan`` and ``inf`` are refused, which
    click's own float types accept), within optional bounds as :class:`click.FloatRange`.
    ``allow_inf``: ``inf`` is a value the option gives a meaning (no limit); ``nan`` never is."""

    name = "float"

    def __init__(self, *args: Any, allow_inf: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_inf = allow_inf

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and (math.isnan(rv) or (math.isinf(rv) and not self.allow_inf)):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class FiniteFloat(click.types.FloatParamType):
    """Any finite float (``type=FINITE`` instead of ``type=float``): no range shown in --help."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


FINITE = FiniteFloat()
