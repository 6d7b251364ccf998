"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A float option that must be a finite number (``nan`` and ``inf`` are refused, which
    click's own float types accept), within optional bounds as :class:`click.FloatRange`."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


#: Any finite float (``type=FINITE`` instead of ``type=float``).
FINITE = FiniteFloatRange()
