"""The benchmark harness: every registered strategy on the same data, side by side.

``run_bench(BenchConfig(...))`` builds each selected strategy through the plugin registry
(built-in or third-party, no per-strategy code here), feeds every one the same batch of
pairs and reports, per strategy:

- **mask quality**, from :func:`maskkit.metrics.mask_metrics` and
  :func:`~maskkit.metrics.energy_metrics` (the one definition of each metric): complementarity %,
  coverage, coverage error, balance, the share of each song's energy kept, temporal diversity,
  adaptivity; learned strategies untrained and, for each ``checkpoints`` entry, trained;
- **speed and cost**: parameters, forward ms per batch and pairs/s (warm-up, then
  ``repeats`` timed calls; median, quartiles, min and max; ``torch.cuda.synchronize`` on
  GPU), forward+backward for learnable strategies, and peak memory (CUDA: max allocated;
  CPU: the sampled rise of the process's resident memory);
- with ``reference=True``, the naive seed implementation (:mod:`maskkit.reference`)
  measured in the same process at the same shapes, and each strategy's speed as a ratio
  to it (learned strategies against ``RefMaskGenerator``, fixed ones against
  ``ref_temporal_mask``), each strategy timed side by side with its reference (alternating
  calls), so that a change of load on a shared machine hits both sides of the ratio;
- with ``train_steps=N``, a quick training comparison: the same small arrangement model
  trained for N steps with each strategy on the same data and seed (through
  :func:`maskkit.train.train`), then its validation combined loss and how much of each
  source reaches the output (:func:`maskkit.metrics.source_similarity`).

With ``variants``, the same strategy gets several rows with different options, each
``"LABEL=STRATEGY key=value ..."``: strategy options, and ``train.<dotted.path>=value``
overrides of :class:`maskkit.train.TrainConfig` for that row's training run only (see
:func:`parse_variant`); every variant sees the same data, seed and training budget.

A strategy that raises (at build, forward, timing or training) is reported in its row
(``error``) and the others still run. Seeds are fixed, so two runs agree on every figure
but the timings and memory. The CLI ``maskkit bench`` is a thin wrapper over this module.

What is timed is the masking step as the model uses it: the strategy's forward **and**
applying the masks to the pair (``Masks.apply``), because the reference functions return
the masked pair; both sides of each ratio therefore do the same work.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import dataclasses
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._version import __version__
from .codec import DEFAULT_CODEC
from .distributed import check_not_bootstrapping, resolve_device
from .errors import CheckpointError, ConfigError, MaskkitError, UnknownNameError, warn
from .logging_utils import plural
from .metrics import ENERGY_METRICS, METRICS, energy_metrics, mask_metrics

#: Column order of the mask-quality metrics (the keys of :func:`maskkit.metrics.mask_metrics`).
METRIC_KEYS = (*METRICS, *ENERGY_METRICS)  # the one list of mask metrics (maskkit.metrics)
#: Frames of ``random=True`` inputs when ``frames`` is not given (the seed README's test shape).
DEFAULT_RANDOM_FRAMES = 300
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

ProgressFn = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------
# configuration and results
# --------------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """What to benchmark and how. ``maskkit bench`` has an option for each field but
    ``min_repeats`` (``--strategy-opt``, ``--codec-opt`` and ``--train-opt`` fill the mappings).

    The defaults finish ``maskkit bench --strategies all`` in well under two minutes on a
    2-core CPU (4 pairs of 4 s of synthetic music through the stft codec, 10 repeats).
    """

    strategies: str | Sequence[str] = "all"
    #: Per-strategy options, ``{"temporal": {"segment": 100}}`` (as ``--strategy-opt``).
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    #: A folder of the user's own music (as ``maskkit.data.make_datasets``); None: synthetic.
    data: str | None = None
    #: Skip unreadable files of ``data`` (with a listing in the result) instead of stopping.
    skip_bad: bool = False
    #: Random ``[batch_size, dim, frames]`` tensors instead of encoded audio.
    random: bool = False
    codec: str = DEFAULT_CODEC
    codec_options: Mapping[str, Any] = field(default_factory=dict)
    segment_seconds: float = 4.0
    batch_size: int = 4
    #: Frames T of the encoding; for audio the segment is cut to give this many frames.
    frames: int | None = None
    #: D of ``random`` inputs (audio inputs take D from the codec).
    dim: int = 128
    device: str = "cpu"
    dtype: str = "float32"
    compile: bool = False
    warmup: int = 2
    #: Timed calls per figure (at most: see ``max_seconds``).
    repeats: int = 10
    #: Stop timing a figure after this many seconds once ``min_repeats`` calls are timed, so
    #: that slow rows (the naive reference's forward+backward) do not dominate the run.
    max_seconds: float = 3.0
    min_repeats: int = 3
    #: torch threads for the run (None: as the process is set); recorded in the environment.
    threads: int | None = None
    seed: int = 0
    #: Checkpoints of trained models; each adds a "trained" row for its strategy.
    checkpoints: Sequence[str] = ()
    reference: bool = False
    #: >0: the quick training comparison, this many optimizer steps per strategy.
    train_steps: int = 0
    #: Extra ``maskkit.train.TrainConfig`` fields for the training comparison.
    train_options: Mapping[str, Any] = field(default_factory=dict)
    #: Named variants, each ``"LABEL=STRATEGY key=value ..."`` (see :func:`parse_variant`):
    #: rows after those of ``strategies``, in this order, labelled LABEL.
    variants: Sequence[str] = ()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option at fault (its field and its flag)."""
        def bad(key: str, rule: str) -> ConfigError:
            return ConfigError(f"bench: option '{key}' ({_flag(key)}) {rule}, got {getattr(self, key)!r}")

        if self.dtype not in DTYPES:
            raise bad("dtype", f"must be one of {list(DTYPES)}")
        for key in ("batch_size", "repeats", "dim", "min_repeats"):
            if int(getattr(self, key)) < 1:
                raise bad(key, "must be >= 1")
        for key in ("warmup", "train_steps", "seed"):
            if int(getattr(self, key)) < 0:
                raise bad(key, "must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be >= 1")
        if self.max_seconds <= 0:
            raise bad("max_seconds", "must be > 0")
        if self.frames is not None and self.frames < 1:
            raise bad("frames", "must be >= 1")
        if self.segment_seconds <= 0:
            raise bad("segment_seconds", "must be > 0")
        if self.random and self.data is not None:
            raise ConfigError("bench: options 'random' and 'data' exclude each other")
        if self.train_options and not self.train_steps:
            raise ConfigError("bench: option 'train_options' (--train-opt) is for the quick training run: "
                              "give train_steps (--train-steps N) too")
        try:
            resolve_device(self.device)
        except ConfigError as e:
            raise ConfigError(f"bench: {e}") from None
        parse_variants(self.variants)


@dataclass
class Timing:
    """Wall-clock times of ``repeats`` calls, in milliseconds."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> Timing:
        ms = sorted(s * 1000.0 for s in samples)
        if len(ms) >= 2:
            q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
        else:
            q1 = q3 = ms[0]
        return cls(statistics.median(ms), q1, q3, ms[0], ms[-1], len(ms))


@dataclass
class BenchRow:
    """One line of the bench: a strategy (untrained, trained from a checkpoint) or a reference.

    ``kind`` is ``"fixed"``, ``"learned"`` or ``"reference"``; ``variant`` is ``"fixed"``,
    ``"untrained"``, ``"trained"`` or ``"reference"``. ``speed_ratio`` is the reference's
    forward time divided by this row's (above 1: faster than the naive seed code), against
    ``ratio_to``; ``fwd_bwd_ratio`` the same for forward+backward. ``error`` is
    ``"<stage>: <Type>: <message>"`` when something raised; figures measured before it stay.

    A row of a named variant (``BenchConfig.variants``) keeps the strategy's real name in
    ``name`` and adds ``variant_label`` (its LABEL, which the row's ``label`` shows instead
    of the name) and ``variant_spec`` (the variant string as given).
    """

    name: str
    kind: str
    variant: str
    plugin: str | None = None
    dist: str | None = None
    version: str | None = None
    learnable: bool = False
    checkpoint: str | None = None
    #: The checkpoint's run trained on hard masks, so they are the ones measured.
    hard_masks: bool = False
    variant_label: str | None = None
    variant_spec: str | None = None
    params: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    forward: Timing | None = None
    pairs_per_s: float | None = None
    fwd_bwd: Timing | None = None
    fwd_bwd_pairs_per_s: float | None = None
    peak_mem_mib: float | None = None
    fwd_bwd_peak_mem_mib: float | None = None
    speed_ratio: float | None = None
    fwd_bwd_ratio: float | None = None
    ratio_to: str | None = None
    #: The reference's timings taken side by side with this row's (the ratios' numerators).
    ref_forward: Timing | None = None
    ref_fwd_bwd: Timing | None = None
    train: dict[str, Any] | None = None
    error: str | None = None
    #: Traceback of ``error`` (in the JSON, not in the table).
    traceback: str | None = None
    #: ``(input_mask, target_mask)`` of the first pair, ``[D, T]`` float32 CPU (for pictures).
    example_masks: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def display_name(self) -> str:
        """The variant's LABEL, or the strategy's name (the training table's first column)."""
        return self.variant_label or self.name

    @property
    def label(self) -> str:
        if self.variant == "trained" and self.checkpoint:
            hard = ", hard masks" if self.hard_masks else ""
            path = Path(self.checkpoint)  # its folder too: runs' checkpoints share names (best.pt)
            where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
            return f"{self.display_name} (trained: {where}{hard})"
        if self.variant == "untrained":
            return f"{self.display_name} (untrained)"
        return self.display_name

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "example_masks"}
        d["label"] = self.label
        for key in ("forward", "fwd_bwd", "ref_forward", "ref_fwd_bwd"):
            t = d[key]
            d[key] = dataclasses.asdict(t) if t is not None else None
        return d

    def flat(self) -> dict[str, Any]:
        """One flat dict (for CSV): ``metric_*``, ``forward_*``, ``fwd_bwd_*``, ``train_*``."""
        out: dict[str, Any] = {"label": self.label, "name": self.name, "variant_label": self.variant_label,
                               "variant_spec": self.variant_spec, "kind": self.kind,
                               "variant": self.variant, "plugin": self.plugin, "dist": self.dist,
                               "version": self.version, "learnable": self.learnable,
                               "checkpoint": self.checkpoint, "hard_masks": self.hard_masks,
                               "params": self.params}
        for k in METRIC_KEYS:
            out[f"metric_{k}"] = self.metrics.get(k)
        for key in ("forward", "fwd_bwd", "ref_forward", "ref_fwd_bwd"):
            t: Timing | None = getattr(self, key)
            for f in dataclasses.fields(Timing):
                out[f"{key}_{f.name}"] = getattr(t, f.name) if t is not None else None
        out.update(pairs_per_s=self.pairs_per_s, fwd_bwd_pairs_per_s=self.fwd_bwd_pairs_per_s,
                   peak_mem_mib=self.peak_mem_mib, fwd_bwd_peak_mem_mib=self.fwd_bwd_peak_mem_mib,
                   speed_ratio=self.speed_ratio, fwd_bwd_ratio=self.fwd_bwd_ratio,
                   ratio_to=self.ratio_to)
        for k, v in (self.train or {}).items():
            out[f"train_{k}"] = v
        out["error"] = self.error
        return out


@dataclass
class BenchResult:
    """Every row, plus the shapes, data and environment they were measured with."""

    config: BenchConfig
    rows: list[BenchRow]
    shapes: dict[str, Any]
    data: str
    environment: dict[str, Any]
    train: dict[str, Any] | None = None
    seconds: float = 0.0
    #: The named variants as run: options converted to their types.
    variants: list[BenchVariant] = field(default_factory=list)
    #: The example masks' channels are sorted by frequency (the codec gives channel frequencies).
    channels_by_frequency: bool = False

    def row(self, name: str, variant: str | None = None) -> BenchRow:
        """The first row of the variant labelled ``name``, else of strategy ``name`` (and
        ``variant`` if given); KeyError if none."""
        for match in (lambda r: r.variant_label == name, lambda r: r.name == name):
            for r in self.rows:
                if match(r) and (variant is None or r.variant == variant):
                    return r
        raise KeyError(f"no bench row for {name!r}" + (f" ({variant})" if variant else ""))

    def to_dict(self) -> dict[str, Any]:
        cfg = dataclasses.asdict(self.config)
        cfg["strategies"] = (self.config.strategies if isinstance(self.config.strategies, str)
                             else list(self.config.strategies or []))
        cfg["checkpoints"] = [str(c) for c in self.config.checkpoints]
        cfg["variants"] = list(self.config.variants)
        return {"maskkit_bench": 1, "environment": self.environment, "config": cfg,
                "shapes": self.shapes, "data": self.data, "train": self.train,
                "variants": [v.to_dict() for v in self.variants],
                "seconds": self.seconds, "rows": [r.to_dict() for r in self.rows]}

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(self.to_dict()), indent=2) + "\n")
        return path

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """One line per row; the environment and shapes repeat on every line (``env_*``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {f"env_{k}": v for k, v in self.environment.items()}
        extra.update({f"shape_{k}": v for k, v in self.shapes.items()})
        extra["data"] = self.data
        lines = [{**r.flat(), **extra} for r in self.rows]
        columns: list[str] = []
        for line in lines:
            columns.extend(k for k in line if k not in columns)
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for line in lines:
                w.writerow({k: ("" if v is None else v) for k, v in _jsonable(line).items()})
        return path

    def write_markdown(self, path: str | os.PathLike[str]) -> Path:
        """:meth:`markdown`, preceded by the command line and the environment."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = self.environment
        head = (f"`{env['command']}`\n\nmaskkit {env['maskkit_version']}, torch {env['torch_version']}, "
                f"{env['device_name']}, {plural(env['threads'], 'thread')}, {env['time']}; "
                f"{self.seconds:.1f} s\n\n")
        path.write_text(head + self.markdown())
        return path

    def write_plots(self, directory: str | os.PathLike[str]) -> list[Path]:
        """``masks.png`` (input/target mask of one pair per row) and ``speed.png`` (speed
        ratios to the reference, or pairs/s without ``reference``). Needs matplotlib."""
        from . import plotting

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        panels = [(r.label, r.example_masks[0], r.example_masks[1]) for r in self.rows
                  if r.example_masks is not None]
        written = [plotting.mask_gallery(panels, directory / "masks.png",
                                         title=f"Masks of the first pair ({self.data})",
                                         ylabel="channel (by Hz)" if self.channels_by_frequency
                                         else "channel")]
        timed = [r for r in self.rows if r.forward is not None]
        missing = [r.label for r in self.rows if r.forward is None]  # named, not silently left out
        if any(r.speed_ratio is not None for r in timed):
            bars = [(r.label, r.speed_ratio) for r in timed if r.speed_ratio is not None]
            ylabel, ref = "speed ratio to the naive seed code (x)", 1.0
        else:
            bars = [(r.label, r.pairs_per_s) for r in timed if r.pairs_per_s is not None]
            ylabel, ref = "pairs / s (forward)", None
        written.append(plotting.speed_bars(
            [b[0] for b in bars], [float(b[1]) for b in bars], directory / "speed.png",
            ylabel=ylabel, reference_line=ref,
            title=(f"Forward speed, batch {self.shapes.get('batch')} on {self.environment['device_name']}"
                   + ("\nlearned: vs RefMaskGenerator; fixed: vs ref_temporal_mask; above 1 = faster"
                      if ref else "")
                   + (f"\nnot timed (an error, see the tables): {', '.join(missing)}" if missing else ""))))
        return written

    def tables(self) -> list[Any]:
        """Rich tables: mask quality, speed and cost, and (if run) the training comparison.

        The error column holds the stage and exception type; :meth:`errors` the messages."""
        from rich.markup import escape
        from rich.table import Table

        def table(title: str, columns: Sequence[str], rows: list[list[str]]) -> Table:
            t = Table(title=escape(title), title_justify="left")
            for i, col in enumerate(columns):
                if i == 0:
                    t.add_column(col, no_wrap=True)
                elif col == "error":
                    t.add_column(col, style="red", overflow="fold")
                else:
                    t.add_column(col, justify="right")
            for row in rows:
                t.add_row(*(escape(c) for c in row))
            return t

        return [table(title, cols, rows) for title, cols, rows in self._sections()]

    def errors(self) -> list[tuple[str, str]]:
        """``(label, error)`` of every row where something raised (strategy or training)."""
        out = [(r.label, r.error) for r in self.rows if r.error]
        out += [(r.label, f"training: {r.train['error']}") for r in self.rows
                if r.train is not None and r.train.get("error")]
        return out

    def notes(self) -> list[str]:
        """Warnings about rows whose figures mean less than they seem: masks that keep (almost)
        only one song on these frames (e.g. ``temporal`` with a segment longer than the pair)
        make a pass-through, which can look good in the quick training."""
        frames = self.shapes.get("frames")
        out = []
        for r in self.rows:
            b = r.metrics.get("balance")
            if b is None or not (b >= 1.0 - ONE_SONG or b <= ONE_SONG):
                continue
            song = "input" if b >= 0.5 else "target"
            trained = " (quick training included)" if r.train is not None and not r.train.get("error") else ""
            out.append(f"{r.label} keeps (almost) only the {song} song on these {frames} frames (balance "
                       f"{b:.3f}), so its row{trained} measures one song passed through, not a mix")
        return out

    def markdown(self) -> str:
        """The same tables as GitHub-flavoured Markdown (for docs and READMEs)."""
        parts = []
        for title, cols, rows in self._sections():
            parts.append(f"**{title}**\n")
            parts.append("| " + " | ".join(cols) + " |")
            parts.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|")
            parts.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
            parts.append("")
        notes = self.notes()
        if notes:
            parts.append("**Notes**\n")
            parts.extend(f"- {n}" for n in notes)
            parts.append("")
        errors = self.errors()
        if errors:  # the tables show each error's stage and type; here what it said
            parts.append("**Errors**\n")
            parts.extend(f"- {label}: {message}" for label, message in errors)
            parts.append("")
        return "\n".join(parts)

    def _sections(self) -> list[tuple[str, list[str], list[list[str]]]]:
        env = self.environment
        any_error = any(r.error for r in self.rows)
        q_cols = ["strategy", "compl. %", "coverage", "cov. err", "balance", "kept in/tg %", "temp. div",
                  "adapt."]
        q_rows = []
        for r in self.rows:
            m = r.metrics
            kept = ("-" if m.get("input_energy_kept") is None else
                    f"{m['input_energy_kept'] * 100:.0f} / {m['target_energy_kept'] * 100:.0f}")
            q_rows.append([r.label, _f(m.get("complementarity"), 1), _f(m.get("coverage"), 3),
                           _f(m.get("coverage_error"), 4), _f(m.get("balance"), 3), kept,
                           _f(m.get("temporal_diversity"), 4), _f(m.get("adaptivity"), 4)]
                          + ([_short_error(r.error)] if any_error else []))
        sections = [(f"Mask quality ({self.data})", q_cols + (["error"] if any_error else []), q_rows)]
        ref = any(r.speed_ratio is not None for r in self.rows)
        s_cols = ["strategy", "params", "fwd ms", "min-max ms", "pairs/s", "fwd+bwd ms", "peak MiB"]
        s_cols += ["x ref", "fwd+bwd x ref"] if ref else []
        s_rows = []
        for r in self.rows:
            s_rows.append([r.label, _int(r.params), _ms(r.forward), _spread(r.forward), _f(r.pairs_per_s, 0),
                           _ms(r.fwd_bwd), _f(r.peak_mem_mib, 1)]
                          + ([_f(r.speed_ratio, 2, "x"), _f(r.fwd_bwd_ratio, 2, "x")] if ref else []))
        sections.append((f"Speed and cost ({env['device_name']}, {plural(env['threads'], 'thread')}, "
                         f"{self.config.dtype}{', compiled' if self.config.compile else ''}; "
                         f"ms: median of up to {self.config.repeats} timed calls after {self.config.warmup} "
                         "warm-up)",
                         s_cols, s_rows))
        if self.train is not None:
            t_cols = ["strategy", "val loss", "val recon", "LSD in dB", "LSD tg dB", "SI-SDR in dB",
                      "SI-SDR tg dB"]
            t_rows = []
            for r in self.rows:
                if r.train is None:
                    continue
                tr = r.train
                t_rows.append([r.display_name, _f(tr.get("val_loss"), 4), _f(tr.get("val_reconstruction"), 4),
                               _f(tr.get("lsd_input"), 2),
                               _f(tr.get("lsd_target"), 2), _f(tr.get("si_sdr_input"), 2),
                               _f(tr.get("si_sdr_target"), 2)])
            sections.append((f"Quick training ({self.train.get('steps')} steps each, same model, data and "
                             f"seed; LSD: lower = closer to that song, SI-SDR: higher = closer)",
                             t_cols, t_rows))
        return sections


# --------------------------------------------------------------------------------------------
# named variants: the same strategy with and without an option
# --------------------------------------------------------------------------------------------
#: What a variant LABEL may hold: it names the row and its training folder.
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")
#: ``train.*`` keys a variant may not override: they are the same for every row of the bench.
_FIXED_TRAIN_KEYS = {
    "strategy": "the strategy is the one after 'LABEL='",
    "strategy_options": "give strategy options as key=value tokens, without 'train.'",
    "max_steps": "every row trains the same number of steps (train_steps / --train-steps)",
    "seed": "every row trains with the same seed (seed / --seed)",
}


@dataclass(frozen=True)
class BenchVariant:
    """One named variant: ``"LABEL=STRATEGY key=value train.a.b=value ..."``.

    ``strategy_options`` are the strategy's options (strings as parsed; their types once
    :func:`resolve_variants` has checked them); ``train`` maps the dotted
    :class:`maskkit.train.TrainConfig` paths of the ``train.*`` tokens (without ``train.``)
    to their values, applied to this variant's training run only.
    """

    label: str
    strategy: str
    strategy_options: dict[str, Any]
    train: dict[str, Any]
    spec: str

    def train_overrides(self) -> dict[str, Any]:
        """``train`` as nested ``TrainConfig.from_preset`` overrides (``{"optim": {"lr": ...}}``)."""
        return train_overrides(self.train)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "strategy": self.strategy, "spec": self.spec,
                "strategy_options": dict(self.strategy_options), "train": dict(self.train)}


def parse_variant(spec: str) -> BenchVariant:
    """Parse ``"LABEL=STRATEGY key=value ..."`` (space-separated tokens; no registry look-up).

    A token whose key starts with ``train.`` is a dotted override of
    :class:`maskkit.train.TrainConfig` for this variant's training run
    (``train.optim.lr=0.001``); the others are strategy options (as ``--strategy-opt``).
    Values stay strings here (:func:`maskkit.config.parse_kv`); :func:`resolve_variants`
    converts them. A malformed string raises :class:`ConfigError` naming it.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"bench: variant {spec!r}: expected a string 'LABEL=STRATEGY key=value ...'")
    from .config import parse_kv

    where = f"bench: variant {spec!r}"
    tokens = spec.split()
    if not tokens:
        raise ConfigError(f"{where}: empty; expected 'LABEL=STRATEGY key=value ...' "
                          "(e.g. 'seg6=temporal segment=6')")
    label, sep, strategy = tokens[0].partition("=")
    label, strategy = label.strip(), strategy.strip()
    if not sep or not label or not strategy:
        raise ConfigError(f"{where}: the first word must be LABEL=STRATEGY, got {tokens[0]!r} "
                          "(e.g. 'seg6=temporal segment=6')")
    if not _LABEL_RE.match(label):
        raise ConfigError(f"{where}: label {label!r} may only hold letters, digits and '_ . + -', "
                          "starting with a letter or digit (it names the row and its training folder)")
    options: dict[str, Any] = {}
    train: dict[str, Any] = {}
    seen: set[str] = set()
    for token in tokens[1:]:
        ((key, value),) = parse_kv([token], owner=where).items()
        if not key:
            raise ConfigError(f"{where}: expected key=value, got {token!r} (no key)")
        if key in seen:
            raise ConfigError(f"{where}: option '{key}' is given twice")
        seen.add(key)
        if key.startswith("train."):
            path = key[len("train."):]
            parts = path.split(".")
            if not all(parts):
                raise ConfigError(f"{where}: {key!r} is not a dotted TrainConfig path "
                                  "(e.g. train.optim.lr=0.001)")
            if parts[0] in _FIXED_TRAIN_KEYS:
                raise ConfigError(f"{where}: {key!r} cannot be set per variant: "
                                  f"{_FIXED_TRAIN_KEYS[parts[0]]}")
            train[path] = value
        elif "." in key:
            raise ConfigError(f"{where}: strategy option {key!r} has a dot; a TrainConfig override "
                              f"starts with 'train.' (e.g. 'train.{key}={value}')")
        else:
            options[key] = value
    return BenchVariant(label=label, strategy=strategy, strategy_options=options, train=train, spec=spec)


def parse_variants(specs: str | Sequence[str] | None) -> list[BenchVariant]:
    """:func:`parse_variant` of each, and no LABEL twice (:class:`ConfigError` otherwise)."""
    if not specs:
        return []
    if isinstance(specs, str):
        specs = [specs]
    out: list[BenchVariant] = []
    by_label: dict[str, str] = {}
    for spec in specs:
        v = parse_variant(spec)
        key = v.label.casefold()  # (a label names a folder: 'A' and 'a' are one on macOS / Windows)
        if key in by_label:
            raise ConfigError(f"bench: variant {v.spec!r}: label '{v.label}' is already used by variant "
                              f"{by_label[key]!r} (labels that differ only in case count as one); each "
                              f"variant needs its own label")
        by_label[key] = v.spec
        out.append(v)
    return out


def resolve_variants(cfg: BenchConfig, names: Sequence[str]) -> list[BenchVariant]:
    """``cfg.variants`` checked against the registry and the rows of ``names``, with every
    value converted to its type; :class:`ConfigError` naming the variant otherwise.

    A variant's strategy options go on top of ``cfg.strategy_options[STRATEGY]`` (if any)
    and are checked by the strategy's ``Config``; its ``train.*`` overrides are checked by
    building a :class:`maskkit.train.TrainConfig` with them (unknown keys, bad values).
    """
    from .plugins import get_strategy_entry

    variants = parse_variants(cfg.variants)
    taken = {n.casefold(): n for n in [*names, *((REF_LEARNED, REF_FIXED) if cfg.reference else ())]}
    out = []
    for v in variants:
        where = f"bench: variant {v.spec!r}"
        if v.label.casefold() in taken:  # (labels name folders: 'Temporal' is 'temporal' on macOS)
            raise ConfigError(f"{where}: label '{v.label}' is the name of another row of this bench "
                              f"(strategy '{taken[v.label.casefold()]}'); pick another label")
        try:
            entry = get_strategy_entry(v.strategy)
        except MaskkitError as e:
            raise ConfigError(f"{where}: {e}") from None
        if v.train and not cfg.train_steps:  # (they would be dropped without a word)
            raise ConfigError(f"{where}: its train.* options are for the quick training run: give "
                              f"train_steps (--train-steps N) too")
        options = {**_option_mapping(_options_for(cfg, v.strategy)), **v.strategy_options}
        out.append(dataclasses.replace(v, strategy_options=_typed_strategy_options(entry, options, where),
                                       train=_typed_train(cfg, v, where)))
    return out


def _option_mapping(opts: Any) -> dict[str, Any]:
    """Strategy options given as a mapping, a Config instance or ``key=value`` strings, as a dict."""
    if opts is None:
        return {}
    if isinstance(opts, Mapping):
        return dict(opts)
    if dataclasses.is_dataclass(opts) and not isinstance(opts, type):
        return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.init}
    from .config import parse_kv

    return dict(parse_kv(opts, owner="bench strategy_options"))


def _typed_strategy_options(entry: Any, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``options`` converted by the strategy's ``Config`` (as building it would)."""
    config_cls = getattr(entry.cls, "Config", None)
    if not options or not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        return dict(options)
    from .config import build_config

    try:
        conf = build_config(config_cls, options, owner=f"strategy '{entry.name}'")
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return {k: getattr(conf, k.replace("-", "_")) for k in options}


def _typed_train(cfg: BenchConfig, v: BenchVariant, where: str) -> dict[str, Any]:
    """The variant's ``train.*`` values as a ``TrainConfig`` built with them has them."""
    if not v.train:
        return {}
    from .train_config import TrainConfig

    try:
        over = v.train_overrides()
        preset = over.pop("preset", (cfg.train_options or {}).get("preset", "small"))
        built = TrainConfig.from_preset(preset, strategy=v.strategy, **over)
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return {path: _get_path(built, path, value) for path, value in v.train.items()}


def _get_path(obj: Any, path: str, default: Any) -> Any:
    for part in path.split("."):
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            return default
    return obj


def _merge_nested(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, recursively where both hold a mapping."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge_nested(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no such machine here
        torch.mps.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``, the device synchronized before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def time_calls(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int,
               max_seconds: float = math.inf, min_repeats: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeats`` times, each timed alone
    (synchronizing the device before and after, so GPU work is counted where it runs).
    Timing stops early once ``min_repeats`` calls are timed and ``max_seconds`` have passed."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < repeats:
        samples.append(_timed(fn, device))
        if len(samples) >= min_repeats and time.perf_counter() - start > max_seconds:
            break
    return Timing.from_seconds(samples)


def time_interleaved(fn: Callable[[], Any], other: Callable[[], Any], device: torch.device, warmup: int,
                     repeats: int, max_seconds: float = math.inf, min_repeats: int = 1
                     ) -> tuple[Timing, Timing]:
    """Time ``fn`` and ``other`` side by side: alternating calls (ABBA order), each timed
    alone, so that a change of load on a shared machine hits both alike and their ratio
    stays meaningful. Returns ``(fn's timing, other's timing)``; stops as :func:`time_calls`."""
    for _ in range(warmup):
        fn()
        other()
    _sync(device)
    a: list[float] = []
    b: list[float] = []
    start = time.perf_counter()
    while len(a) < repeats:
        order = ((fn, a), (other, b)) if len(a) % 2 == 0 else ((other, b), (fn, a))
        for f, samples in order:
            samples.append(_timed(f, device))
        if len(a) >= min_repeats and time.perf_counter() - start > max_seconds:
            break
    return Timing.from_seconds(a), Timing.from_seconds(b)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so an RSS rise reflects new use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def steady_allocator() -> bool:
    """Keep freed memory in glibc's heap for the rest of the process: blocks up to 32 MB come
    from the heap, not from fresh ``mmap`` calls, and free memory at the heap's top is not
    handed back after each call. Otherwise the allocator's state decides whether every call
    of a small strategy pays for page faults on a few MB of new memory: the same strategy
    timed 0.1 ms or 1.8 ms (tight range both times) depending on what ran before it. Returns
    whether it applied (glibc only). :func:`peak_memory_mib` trims explicitly, so memory
    figures are unchanged."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20)) and bool(libc.mallopt(-1, 1 << 30))  # MMAP_, TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def peak_memory_mib(fn: Callable[[], Any], device: torch.device, min_seconds: float = 0.05) -> float | None:
    """Peak memory that one call of ``fn`` adds, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated
    before. CPU: the process's resident set size (``/proc/self/statm``) sampled by a thread
    every 0.2 ms while ``fn`` runs, minus its value just before; freed heap is handed back to
    the OS (glibc ``malloc_trim``) before each call, so that memory kept by the allocator
    from an earlier call does not hide the rise. ``fn`` is called again until ``min_seconds``
    have passed and the largest rise is kept (a single short call may fall between two
    samples). Approximate (a sampled high-water mark); None where it cannot be measured.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return max(0, torch.cuda.max_memory_allocated(device) - base) / 2**20
    if device.type != "cpu" or _rss_bytes() is None:
        return None
    # state[0]: which call is running; state[1]: highest RSS seen during it
    state = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            call = state[0]
            v = _rss_bytes() or 0
            if call == state[0] and v > state[1]:
                state[1] = v
            time.sleep(0.0002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    best = 0
    try:
        t_end = time.perf_counter() + min_seconds
        while state[0] == 0 or time.perf_counter() < t_end:
            _malloc_trim()
            base = _rss_bytes() or 0
            state[1] = base
            state[0] += 1
            fn()
            best = max(best, max(state[1], _rss_bytes() or 0) - base)
    finally:
        done.set()
        th.join()
    return best / 2**20


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager[Any]:
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def _error_text(stage: str, e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{stage}: {type(e).__name__}" + (f": {msg}" if msg else "")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and threads, recorded with every result."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {
        "maskkit_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": name,
        "cuda_version": torch.version.cuda if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "command": _command_line(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _command_line() -> str:
    """The command that is running, as a user would type it (``maskkit bench ...``)."""
    import shlex

    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog in ("main.py", "__main__.py"):  # python -m maskkit (or maskkit_cli.main)
        prog = "maskkit"
    return shlex.join([prog, *sys.argv[1:]])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass
class BenchData:
    """The batch every strategy sees: ``x_input``/``x_target`` ``[B, D, T]`` on the device."""

    x_input: Tensor
    x_target: Tensor
    spec: Any
    description: str


def load_bench_data(cfg: BenchConfig, device: torch.device) -> BenchData:
    """Random tensors (``cfg.random``) or the first ``batch_size`` pairs of the dataset
    (synthetic music, or ``cfg.data``) encoded with ``cfg.codec``; deterministic in ``seed``."""
    from .strategy import EncodingSpec

    B = cfg.batch_size
    if cfg.random:
        T = cfg.frames or DEFAULT_RANDOM_FRAMES
        g = torch.Generator().manual_seed(cfg.seed)
        x_in = torch.randn(B, cfg.dim, T, generator=g)
        x_tg = torch.randn(B, cfg.dim, T, generator=g)
        return BenchData(x_in.to(device), x_tg.to(device), EncodingSpec(dim=cfg.dim),
                         f"random N(0,1) [B={B}, D={cfg.dim}, T={T}], seed {cfg.seed}")

    from .data import iter_batches, make_datasets
    from .plugins import build_codec

    codec = build_codec(cfg.codec, dict(cfg.codec_options)).eval()
    sr = int(codec.sample_rate)
    n = int(round(cfg.segment_seconds * sr))
    if cfg.frames is not None:  # the fewest samples that give `frames` frames
        rate = codec.spec.frame_rate or codec.num_frames(sr)
        n = max(1, int(math.floor((cfg.frames - 1) / rate * sr)))
        while codec.num_frames(n) < cfg.frames:
            n += 1 + n // 1000
    # The validation split: the same pairs in every run and every epoch.
    _, val = make_datasets(cfg.data, sample_rate=sr, segment_seconds=n / sr, seed=cfg.seed,
                           train_pairs=1, val_pairs=max(B, 32), skip_bad=cfg.skip_bad)
    if len(val) < B:
        raise ConfigError(f"bench: {cfg.data} gives {len(val)} validation pairs, fewer than "
                          f"--batch-size {B}")
    a_in, a_tg, _ = next(iter_batches(val, B))
    with torch.no_grad():
        x_in, x_tg = codec.encode(a_in), codec.encode(a_tg)
    if cfg.frames is not None:
        x_in, x_tg = x_in[..., : cfg.frames], x_tg[..., : cfg.frames]
    source = f"folder {cfg.data}" if cfg.data else "synthetic music"
    skipped = list(getattr(val, "skipped", None) or [])
    if skipped:

        source += f" ({len(skipped)} bad file(s) skipped)"
        warn(f"bench: skipped {len(skipped)} bad file(s) of {cfg.data}: "
             + "; ".join(f"{p}: {r}" for p, r in skipped[:10]))
    D, T = x_in.shape[1], x_in.shape[2]
    return BenchData(x_in.contiguous().to(device), x_tg.contiguous().to(device), codec.spec,
                     f"{source}, {cfg.codec} codec [B={B}, D={D}, T={T}], seed {cfg.seed}")


# --------------------------------------------------------------------------------------------
# one row
# --------------------------------------------------------------------------------------------
MaskTriple = tuple[Tensor, Tensor, "Tensor | None"]


@dataclass
class _Subject:
    """What a row measures, without knowing which strategy it is.

    ``masks(module, x_in, x_tg)`` returns ``(input_mask, target_mask, reg_loss)``; ``module``
    is ``self.module`` or its compiled version (``torch.compile``). ``step`` is the timed call
    (default: ``masks`` and applying them to the pair).
    """

    module: torch.nn.Module | None
    masks: Callable[[Any, Tensor, Tensor], MaskTriple]
    step: Callable[[Any, Tensor, Tensor], Any] | None = None
    origin: str = ""


def _strategy_subject(strategy: Any, name: str, origin: str, hard: bool = False) -> _Subject:
    from .strategy import validate_masks

    kw = {"hard": True} if hard else {}

    def masks(module: Any, x_in: Tensor, x_tg: Tensor) -> MaskTriple:
        out = validate_masks(module(x_in, x_tg, **kw), x_in, name, origin, check_values=False)
        return out.input_mask, out.target_mask, out.reg_loss

    return _Subject(strategy, masks, origin=origin)


@dataclass
class _Steps:
    """The timed calls of a subject: forward (eval, no grad) and, if learnable, forward+backward."""

    module: torch.nn.Module | None
    forward: Callable[[], None]
    fwd_bwd: Callable[[], None] | None

    def mode(self, train: bool) -> None:
        if self.module is not None:
            self.module.train(train)


def _steps(subject: _Subject, data: BenchData, cfg: BenchConfig, device: torch.device,
           backward: bool) -> _Steps:
    x_in, x_tg = data.x_input, data.x_target
    module = subject.module
    runner: Any = module
    if cfg.compile and module is not None:
        runner = torch.compile(module)

    def forward() -> None:
        with torch.no_grad(), _autocast(device, cfg.dtype):
            if subject.step is not None:
                subject.step(runner, x_in, x_tg)
            else:
                a, b, _ = subject.masks(runner, x_in, x_tg)
                x_in * a, x_tg * b  # noqa: B018 - the masked pair is part of the timed step

    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    if not (backward and params):
        return _Steps(module, forward, None)

    def fwd_bwd() -> None:
        with _autocast(device, cfg.dtype):
            a, b, reg = subject.masks(runner, x_in, x_tg)
            loss = (x_in * a).float().pow(2).mean() + (x_tg * b).float().pow(2).mean()
            if reg is not None:
                loss = loss + reg.float()
        loss.backward()
        for p in params:
            p.grad = None

    return _Steps(module, forward, fwd_bwd)


@dataclass
class _Reference:
    """A reference's timed calls, for the rows measured side by side with it."""

    name: str
    steps: _Steps


def _measure(row: BenchRow, subject: _Subject, data: BenchData, cfg: BenchConfig,
             device: torch.device, backward: bool, reference: _Reference | None = None) -> _Steps | None:
    """Fill ``row`` with metrics, example masks, timings and memory; record the first error.

    With ``reference``, each timing alternates with the reference's same step
    (:func:`time_interleaved`) and the row's ratios come from those paired timings.
    Returns the row's timed steps (None when it failed before building them).
    """
    from .strategy import Masks, validate_masks

    x_in, x_tg = data.x_input, data.x_target
    B = x_in.shape[0]
    module = subject.module
    stage = "forward"
    steps = None
    timing = {"warmup": cfg.warmup, "repeats": cfg.repeats, "max_seconds": cfg.max_seconds,
              "min_repeats": cfg.min_repeats}
    try:
        if module is not None:
            row.params = sum(p.numel() for p in module.parameters())
            module.to(device).eval()
        with torch.no_grad(), _autocast(device, cfg.dtype):
            mi, mt, _ = subject.masks(module, x_in, x_tg)
        validate_masks(Masks(mi, mt), x_in, row.name, subject.origin)
        stage = "metrics"
        row.metrics = {**mask_metrics(mi, mt), **energy_metrics(x_in, x_tg, mi, mt)}
        from .viz import channel_order  # low to high frequency, as `maskkit masks` draws them

        order = channel_order(getattr(data.spec, "channel_freqs", None), x_in.shape[1])
        row.example_masks = (mi.detach().float().expand_as(x_in)[0].cpu()[order].clone(),
                             mt.detach().float().expand_as(x_in)[0].cpu()[order].clone())

        stage = "compile"
        steps = _steps(subject, data, cfg, device, backward)
        ref = reference.steps if reference is not None else None
        if ref is not None:
            ref.mode(False)
        stage = "timing"
        if ref is not None:
            row.forward, row.ref_forward = time_interleaved(steps.forward, ref.forward, device, **timing)
            row.ratio_to = reference.name  # type: ignore[union-attr]
            row.speed_ratio = row.ref_forward.median_ms / row.forward.median_ms
        else:
            row.forward = time_calls(steps.forward, device, **timing)
        row.pairs_per_s = B / (row.forward.median_ms / 1000.0)
        stage = "memory"
        row.peak_mem_mib = peak_memory_mib(steps.forward, device)

        if steps.fwd_bwd is not None:
            steps.mode(True)
            stage = "forward+backward timing"
            if ref is not None and ref.fwd_bwd is not None:
                ref.mode(True)
                row.fwd_bwd, row.ref_fwd_bwd = time_interleaved(steps.fwd_bwd, ref.fwd_bwd, device, **timing)
                row.fwd_bwd_ratio = row.ref_fwd_bwd.median_ms / row.fwd_bwd.median_ms
                ref.mode(False)
            else:
                row.fwd_bwd = time_calls(steps.fwd_bwd, device, **timing)
            row.fwd_bwd_pairs_per_s = B / (row.fwd_bwd.median_ms / 1000.0)
            stage = "forward+backward memory"
            row.fwd_bwd_peak_mem_mib = peak_memory_mib(steps.fwd_bwd, device)
            steps.mode(False)
    except Exception as e:  # one failing strategy must not stop the bench
        row.error = _error_text(stage, e)
        row.traceback = traceback.format_exc()
    return steps


def _strategy_row(name: str, entry: Any, cfg: BenchConfig, data: BenchData, device: torch.device,
                  checkpoint: str | None = None, references: dict[str, _Reference] | None = None,
                  named: BenchVariant | None = None) -> BenchRow:
    """Measure strategy ``name``: built with its options (or those of the named variant
    ``named``), or from ``checkpoint``."""
    learnable = bool(getattr(entry.cls, "learnable", False))
    if checkpoint is not None:
        variant = "trained"
    else:
        variant = "untrained" if learnable else "fixed"
    row = BenchRow(name=name, kind="learned" if learnable else "fixed", variant=variant,
                   plugin=entry.plugin, dist=entry.dist, version=entry.version, learnable=learnable,
                   checkpoint=checkpoint)
    if named is not None:
        row.variant_label, row.variant_spec = named.label, named.spec
    try:
        torch.manual_seed(cfg.seed)
        if checkpoint is not None:
            from .checkpoint import load_checkpoint, strategy_from_checkpoint, trained_on_hard_masks

            ckpt = load_checkpoint(checkpoint)
            strategy = strategy_from_checkpoint(ckpt)
            row.hard_masks = trained_on_hard_masks(ckpt)
        else:
            from .plugins import build_strategy

            options = dict(named.strategy_options) if named is not None else _options_for(cfg, name)
            strategy = build_strategy(name, options, spec=data.spec)
    except Exception as e:
        row.error = _error_text("checkpoint" if checkpoint else "build", e)
        row.traceback = traceback.format_exc()
        return row
    ref = (references or {}).get(REF_LEARNED if learnable else REF_FIXED)
    _measure(row, _strategy_subject(strategy, name, entry.origin, hard=row.hard_masks), data, cfg, device,
             backward=learnable, reference=ref)
    return row


def _options_for(cfg: BenchConfig, name: str) -> Any:
    opts = cfg.strategy_options.get(name) if cfg.strategy_options else None
    return dict(opts) if isinstance(opts, Mapping) else opts


#: The references: learned strategies are compared with the first, fixed ones with the second.
REF_LEARNED, REF_FIXED = "RefMaskGenerator", "ref_temporal_mask"


def _reference_rows(cfg: BenchConfig, data: BenchData, device: torch.device
                    ) -> tuple[list[BenchRow], dict[str, _Reference]]:
    """The naive seed code measured like a strategy (RefMaskGenerator, ref_temporal_mask),
    and its timed steps for the strategies' side-by-side timings."""
    from . import reference

    D = data.x_input.shape[1]
    refs: dict[str, _Reference] = {}
    gen_row = BenchRow(name=REF_LEARNED, kind="reference", variant="reference", learnable=True,
                       plugin="maskkit.reference")
    try:
        torch.manual_seed(cfg.seed)
        gen = reference.RefMaskGenerator(dim=D)
    except Exception as e:
        gen_row.error = _error_text("build", e)
        gen_row.traceback = traceback.format_exc()
    else:
        def gen_masks(module: Any, x_in: Tensor, x_tg: Tensor) -> MaskTriple:
            m_in, m_tg, reg = module(x_in, x_tg)
            return m_in, m_tg, reg

        steps = _measure(gen_row, _Subject(gen, gen_masks, origin="maskkit.reference"), data, cfg, device,
                         backward=True)
        if gen_row.error is None and steps is not None:
            refs[REF_LEARNED] = _Reference(REF_LEARNED, steps)

    tmp_row = BenchRow(name=REF_FIXED, kind="reference", variant="reference",
                       plugin="maskkit.reference", params=0)

    def tmp_masks(module: Any, x_in: Tensor, x_tg: Tensor) -> MaskTriple:
        # ref_temporal_mask returns the masked pair; on all-ones inputs that is the mask pair.
        one = torch.ones(1, 1, x_in.shape[-1], device=x_in.device, dtype=x_in.dtype)
        m_in, m_tg = reference.ref_temporal_mask(one, one)
        return m_in, m_tg, None

    def tmp_step(module: Any, x_in: Tensor, x_tg: Tensor) -> Any:
        return reference.ref_temporal_mask(x_in, x_tg)

    steps = _measure(tmp_row, _Subject(None, tmp_masks, tmp_step, origin="maskkit.reference"), data, cfg,
                     device, backward=False)
    if tmp_row.error is None and steps is not None:
        refs[REF_FIXED] = _Reference(REF_FIXED, steps)
    for r in (gen_row, tmp_row):
        if r.forward is not None:
            r.ratio_to, r.speed_ratio = r.name, 1.0
            r.fwd_bwd_ratio = 1.0 if r.fwd_bwd is not None else None
    return [gen_row, tmp_row], refs


# --------------------------------------------------------------------------------------------
# quick training comparison
# --------------------------------------------------------------------------------------------
def _train_rows(rows: list[BenchRow], cfg: BenchConfig, step: Callable[[str], None],
                variants: Sequence[BenchVariant] = ()) -> dict[str, Any]:
    """Train the same small model with each strategy row; fill ``row.train``.

    Every strategy gets the same ``TrainConfig`` but its name: the ``small`` preset (or
    ``train_options["preset"]``), ``max_steps = train_steps``, the bench's seed, device,
    codec, data folder (synthetic music otherwise, ``random`` included) and segment length
    (``segment_seconds``, unless ``random`` or ``frames``), one process,
    checkpoints in a temporary folder (or ``train_options["checkpoint_dir"]/<name>``).
    A variant's row adds its strategy options and its ``train.*`` overrides (deep-merged
    into ``train_options``'s) and trains in ``<folder>/<LABEL>``.
    """
    import tempfile

    base = train_overrides(cfg.train_options)
    by_label = {v.label: v for v in variants}
    info: dict[str, Any] = {"steps": cfg.train_steps, "data": cfg.data or "synthetic music",
                            "options": {k: _jsonable(v) for k, v in cfg.train_options.items()}}
    if variants:
        info["variant_options"] = {v.label: {k: _jsonable(x) for k, x in v.train.items()} for v in variants}
    with tempfile.TemporaryDirectory(prefix="maskkit-bench-train-") as tmp:
        for r in rows:
            if r.kind == "reference" or r.variant == "trained":
                continue
            step(f"training with {r.display_name} ({cfg.train_steps} steps)")
            variant = by_label.get(r.variant_label) if r.variant_label else None
            overrides = (train_overrides({**cfg.train_options, **variant.train}) if variant is not None
                         else dict(base))
            run_dir = Path(overrides.pop("checkpoint_dir", None) or tmp) / r.display_name
            try:
                r.train = train_and_evaluate(
                    r.name, cfg, run_dir, overrides,
                    strategy_options=variant.strategy_options if variant is not None else None)
            except Exception as e:  # one failing strategy must not stop the others
                r.train = {"error": _error_text("train", e), "traceback": traceback.format_exc()}
    return info


def train_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"batch_size": "4", "model.d_model": "32"}`` -> ``TrainConfig.from_preset`` overrides:
    top-level fields converted to their types (strings from the CLI), dotted keys nested
    (``"a.b.c": v`` -> ``{"a": {"b": {"c": v}}}``; the sections convert their own values)."""
    from .config import build_config
    from .train_config import TrainConfig

    top: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for key, value in options.items():
        if "." in key:
            for part in reversed(key.split(".")):
                value = {part: value}
            nested = _merge_nested(nested, value)
        elif isinstance(value, Mapping):
            nested = _merge_nested(nested, {key: value})
        else:
            top[key] = value
    if top:
        converted = build_config(TrainConfig, {k: v for k, v in top.items() if k != "preset"},
                                 owner="bench train_options")
        top = {k: (v if k == "preset" else getattr(converted, k)) for k, v in top.items()}
    return {**top, **nested}


def train_and_evaluate(name: str, cfg: BenchConfig, run_dir: Path,
                       overrides: Mapping[str, Any] | None = None, *,
                       strategy_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train the small model with strategy ``name`` for ``cfg.train_steps`` steps, then report
    the validation combined loss and :func:`maskkit.metrics.source_similarity` of the
    model's output on the validation pairs (LSD and SI-SDR against each song).

    ``strategy_options`` (default: ``cfg.strategy_options[name]``) are the strategy's options."""
    from .metrics import source_similarity
    from .train import TrainConfig, load_model, train

    over = dict(overrides or {})
    preset = over.pop("preset", "small")
    data = dict(over.pop("data", {}) or {})
    if cfg.data is not None:
        data.setdefault("source", cfg.data)
        data.setdefault("skip_bad", cfg.skip_bad)
    from .train_config import DataConfig

    shortest = next(f.metadata["min"] for f in dataclasses.fields(DataConfig) if f.name == "segment_seconds")
    if not cfg.random and cfg.frames is None and cfg.segment_seconds >= shortest:
        data.setdefault("segment_seconds", cfg.segment_seconds)  # the pairs of the tables, in length too
    settings: dict[str, Any] = {
        "strategy": name, "codec": cfg.codec,
        "strategy_options": (dict(strategy_options) if strategy_options is not None
                             else _option_mapping(_options_for(cfg, name))),
        "codec_options": dict(cfg.codec_options), "seed": cfg.seed, "max_steps": cfg.train_steps,
        "device": cfg.device, "quiet": True, "world_size": 1, "checkpoint_dir": str(run_dir),
        "data": data}
    settings = _merge_nested(settings, over)  # e.g. codec_options.x adds to the bench's codec options
    tcfg = TrainConfig.from_preset(preset, **settings)
    # enough epochs for max_steps whatever the epoch length (the schedule follows max_steps)
    tcfg = dataclasses.replace(tcfg, epochs=max(tcfg.epochs, cfg.train_steps))
    t0 = time.perf_counter()
    result = train(tcfg)
    seconds = time.perf_counter() - t0
    metrics = result.final_metrics
    out: dict[str, Any] = {"steps": result.steps, "val_loss": metrics.get("val_loss"),
                           # the combined loss less the strategy's own regularization terms: the
                           # column that compares a learned strategy with the rules like for like
                           "val_reconstruction": metrics.get("val_reconstruction"),
                           "val_complementarity": metrics.get("val_complementarity"),
                           "train_loss": metrics.get("train_loss"), "seconds": seconds}
    if result.last_checkpoint is None:
        raise MaskkitError(f"training with '{name}' wrote no checkpoint in {run_dir}")
    loaded = load_model(result.last_checkpoint, map_location=resolve_device(cfg.device))
    out.update(_output_similarity(loaded, tcfg, source_similarity))
    return out


@torch.no_grad()
def _output_similarity(loaded: Any, tcfg: Any,
                       similarity: Callable[..., dict[str, float]]) -> dict[str, float]:
    """Mean of ``similarity(output, input, target)`` over the validation pairs of ``tcfg``."""
    from .data import iter_batches

    model, codec = loaded.model, loaded.codec
    device = next(model.parameters()).device
    _, val = tcfg.data.datasets(int(codec.sample_rate), tcfg.seed)
    sums: dict[str, float] = {}
    count = 0
    for a_in, a_tg, style in iter_batches(val, tcfg.batch_size, device=device):
        out, _ = model(codec.encode(a_in), codec.encode(a_tg), style=style)
        audio = codec.decode(out.float(), length=a_in.shape[-1])
        for k, v in similarity(audio, a_in, a_tg).items():
            sums[k] = sums.get(k, 0.0) + v * a_in.shape[0]
        count += a_in.shape[0]
    return {k: v / max(count, 1) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------------------------
def run_bench(config: BenchConfig | None = None, *, progress: ProgressFn | None = None,
              **overrides: Any) -> BenchResult:
    """Benchmark the selected strategies (see the module docstring); returns every figure.

    ``config`` fields may also be given as keyword arguments (``run_bench(strategies="all",
    random=True)``). ``progress(label, done, total)`` is called before each step.
    Raises :class:`ConfigError` / :class:`UnknownNameError` for bad options or names (a bad
    variant: :class:`ConfigError` naming it); errors of single strategies are reported in
    their rows instead. ``strategies`` may be empty (``""``) when ``variants`` are given.

    It first calls :func:`steady_allocator`, which stays in effect for the rest of the process
    (glibc keeps freed memory instead of handing it back: a notebook's resident size stays at
    its high-water mark); run the bench in a process of its own if that matters.
    """
    check_not_bootstrapping("maskkit.bench.run_bench()")
    cfg = dataclasses.replace(config, **overrides) if config is not None else BenchConfig(**overrides)
    cfg.validate()
    from .plugins import resolve_strategy_names

    try:
        names = resolve_strategy_names(cfg.strategies or [])
    except UnknownNameError as e:  # named by the option it came from
        raise UnknownNameError(f"bench: option 'strategies' (--strategies): {e}") from None
    variants = resolve_variants(cfg, names)
    if not names and not variants and not cfg.checkpoints:
        raise ConfigError("bench: nothing to benchmark: the strategy selection is empty and no variants "
                          "or checkpoints are given")
    benchmarked = list(dict.fromkeys([*names, *(v.strategy for v in variants)]))
    stray = sorted(set(cfg.strategy_options or {}) - set(benchmarked))
    if stray:
        raise ConfigError(f"bench: options given for {', '.join(repr(n) for n in stray)}, which "
                          f"{'is' if len(stray) == 1 else 'are'} not among the strategies benchmarked "
                          f"({', '.join(benchmarked) or 'none'})")
    from .plugins import get_strategy_entry

    for name in names:  # typed options checked before any work (the variants' are, above)
        given = _options_for(cfg, name)
        entry = get_strategy_entry(name)
        instance = dataclasses.is_dataclass(given) and not isinstance(given, type)
        if instance and type(given) is not entry.cls.Config:
            # (the rows rebuild the strategy, and the training its checkpoint, from plain options)
            raise ConfigError(f"bench: strategy_options for '{name}' must be key=value options or its own "
                              f"Config ({entry.cls.Config.__name__}), got {type(given).__name__}")
        opts = _option_mapping(given)
        if opts:
            shown = " ".join(f"{name}:{k}={v}" for k, v in opts.items())
            _typed_strategy_options(entry, opts, f"bench: --strategy-opt {shown}")
    steady_allocator()  # timings of the strategy, not of the allocator's state (see there)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, names, progress, variants)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: BenchConfig, names: list[str], progress: ProgressFn | None,
         variants: Sequence[BenchVariant] = ()) -> BenchResult:
    from .plugins import get_strategy_entry

    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    entries = {n: get_strategy_entry(n) for n in [*names, *(v.strategy for v in variants)]}
    total = 1 + len(names) + len(variants) + len(cfg.checkpoints) + (1 if cfg.reference else 0)
    total += len(names) + len(variants) if cfg.train_steps else 0
    done = 0

    def step(label: str) -> None:
        nonlocal done
        if progress:
            progress(label, done, total)
        done += 1

    step("loading data")
    data = load_bench_data(cfg, device)
    shapes = {"batch": int(data.x_input.shape[0]), "dim": int(data.x_input.shape[1]),
              "frames": int(data.x_input.shape[2])}

    ref_rows: list[BenchRow] = []
    references: dict[str, _Reference] = {}
    if cfg.reference:  # first: every strategy is then timed side by side with its reference
        step("measuring the naive seed reference")
        ref_rows, references = _reference_rows(cfg, data, device)
    rows: list[BenchRow] = []
    for name in names:
        step(f"measuring {name}")
        rows.append(_strategy_row(name, entries[name], cfg, data, device, references=references))
    for v in variants:
        step(f"measuring {v.label} ({v.strategy})")
        rows.append(_strategy_row(v.strategy, entries[v.strategy], cfg, data, device, references=references,
                                  named=v))
    for ckpt in cfg.checkpoints:
        step(f"measuring checkpoint {Path(ckpt).name}")
        rows.append(_checkpoint_row(str(ckpt), cfg, data, device, references))
    rows.extend(ref_rows)

    train_info = None
    if cfg.train_steps:
        train_info = _train_rows(rows, cfg, step, variants)
    if progress:
        progress("done", total, total)
    return BenchResult(config=cfg, rows=rows, shapes=shapes, data=data.description,
                       environment=environment(device), train=train_info,
                       seconds=time.perf_counter() - t0, variants=list(variants),
                       channels_by_frequency=getattr(data.spec, "channel_freqs", None) is not None)


def _checkpoint_row(path: str, cfg: BenchConfig, data: BenchData, device: torch.device,
                    references: dict[str, _Reference] | None = None) -> BenchRow:
    """A "trained" row for the strategy stored in checkpoint ``path``."""
    from .checkpoint import install_hint, load_checkpoint
    from .plugins import get_strategy_entry

    try:
        ckpt = load_checkpoint(path)
        info = ckpt["strategy"]
        try:
            entry = get_strategy_entry(info["name"])
        except MaskkitError as e:  # named as arrange and agent inspect name it: which plugin to install
            raise CheckpointError(f"{path} needs strategy '{info['name']}'{install_hint(info)}: "
                                  f"{e}") from None
    except (MaskkitError, KeyError, TypeError) as e:
        row = BenchRow(name=Path(path).name, kind="learned", variant="trained", checkpoint=path)
        row.error = _error_text("checkpoint", e)
        return row
    return _strategy_row(entry.name, entry, cfg, data, device, checkpoint=path, references=references)


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------
def _flag(key: str) -> str:
    """The command-line flag of a BenchConfig field (``min_repeats``: no flag of its own)."""
    return {"min_repeats": "a minimum of --repeats", "dim": "--dim"}.get(key, "--" + key.replace("_", "-"))


#: A balance this close to 0 or 1 means the masks keep one song only (see BenchResult.notes).
ONE_SONG = 0.01


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _f(v: float | None, digits: int, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:,.{digits}f}{suffix}"


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _digits(ms: float) -> int:
    return 3 if ms < 1 else 2 if ms < 10 else 1


def _ms(t: Timing | None) -> str:
    return "-" if t is None else f"{t.median_ms:.{_digits(t.median_ms)}f}"


def _spread(t: Timing | None) -> str:
    if t is None:
        return "-"
    d = _digits(t.median_ms)
    return f"{t.min_ms:.{d}f}-{t.max_ms:.{d}f}"


def _short_error(error: str | None) -> str:
    """``"forward: RuntimeError"`` of ``"forward: RuntimeError: message"``."""
    if not error:
        return ""
    parts = error.split(": ")
    return ": ".join(parts[:2])

