"""Arrange two whole songs with a trained model (or a fixed strategy): windowed inference.

The arrangement model is trained on short segments (4 s by default), so a song is cut into
overlapping windows of that length, each window pair goes through codec -> strategy ->
model -> codec, and the windows are put back together by **crossfaded overlap-add**::

    offsets   0, hop, 2*hop, ...      the last window cut at the song's end
    w(t)      triangular (or Hann) weight over the window, > 0 everywhere
    out[n]    = sum_k w(n - o_k) * y_k(n - o_k)  /  sum_k w(n - o_k)

Every window is filled with the song's own neighbouring audio (no window runs past the
song's ends, so there is no zero padding at all), and each output sample is a weighted mean
of the windows that cover it, with the weight of a window falling to almost nothing at its
edges: a model that is wrong near the edges of its input (most are) is faded out there, and
a window boundary cannot make a click. Window and hop are whole numbers of codec frames and
every window starts on the frame grid of a whole-song encoding, so that a codec whose
frames depend on where they start (any STFT) sees the same frames in every window. The idea
is demucs' ``apply.py``; with an identity model the output equals the input, and a fixed
channel-only masking over 0.25 s windows matches the same masking of the whole clip to
within 0.3% of its peak (``tests/test_arrange.py``).

Memory: the whole song stays on the CPU as float32 at the codec's rate (input, target and
the preallocated output: 12 bytes a sample); only ``batch_size`` windows at a time are sent
to the device, so activations are bounded by the window batch, not by the song's length.

Fixed strategies that depend on the position inside the input (``temporal``: segments
counted from the start of each window) are applied per window; the crossfade blends
neighbouring windows where they disagree.
"""

from __future__ import annotations

import bisect
import math
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .distributed import resolve_device
from .errors import AudioError, ConfigError, warn
from .metrics import mask_metrics
from .paths import check_output_file
from .strategy import Masks, MaskStrategy, call_strategy, check_style, resolve_style, warn_untrained

#: Songs are read in blocks of this many seconds (the resampler's peak memory is a block's).
LOAD_BLOCK_SECONDS = 30
_NORM_BLOCK = 1 << 16

#: Window length when neither a checkpoint nor ``window_seconds`` says otherwise (the seed's segment).
DEFAULT_WINDOW_SECONDS = 4.0

#: A song: a file, or a tensor / NumPy array ``[N]`` or ``[C, N]`` already at the codec's rate.
AudioSource = str | os.PathLike | Tensor | np.ndarray

#: ``fn(input_windows, target_windows)`` -> ``(output_windows, masks or None)``; all ``[B, 1, W]``.
WindowFn = Callable[[Tensor, Tensor], tuple[Tensor, Masks | None]]


@dataclass
class ArrangeResult:
    """What :func:`arrange` made.

    ``audio``: the arrangement, ``[1, N]`` float32 on the CPU at ``sample_rate`` (before the
    anti-clipping that :func:`maskkit.audio.save_audio` applies when writing). ``metrics``:
    :func:`maskkit.metrics.mask_metrics` of each window batch's masks, averaged over the
    windows (weighted by batch size).
    """

    audio: Tensor
    sample_rate: int
    path: Path | None
    strategy: str
    mix_only: bool
    window: int
    hop: int
    num_windows: int
    metrics: dict[str, float] = field(default_factory=dict)
    #: The style label the masks were conditioned on (``style=``), or None.
    style: str | int | None = None
    #: Hard (0/1) masks were used (asked for, or the checkpoint trained with them).
    hard: bool = False

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


# -- overlap-add ------------------------------------------------------------------------------

def crossfade_weight(window: int, kind: str = "triangle") -> Tensor:
    """The overlap-add weight of one window, ``[window]`` float32, strictly positive.

    ``"triangle"``: rises linearly from ``1/h`` to 1 at the middle and falls back
    (``h = ceil(window / 2)``); ``"hann"``: ``sin^2(pi (t + 1/2) / window)``. Both sum to a
    constant at 50% overlap; the running-sum normalization of :func:`overlap_add` makes any
    overlap exact.
    """
    if window < 1:
        raise ConfigError(f"crossfade window must be >= 1 sample, got {window}")
    t = torch.arange(window, dtype=torch.float64)
    if kind == "triangle":
        w = torch.minimum(t + 1, window - t)
        w = w / w.max()
    elif kind == "hann":
        w = torch.sin(math.pi * (t + 0.5) / window) ** 2
    else:
        raise ConfigError(f"crossfade must be 'triangle' or 'hann', got {kind!r}")
    return w.float()


def window_offsets(length: int, window: int, hop: int, align: int = 1) -> list[int]:
    """Start of each window over ``length`` samples: ``0, hop, 2 hop, ...`` while a window
    ends inside the song, then one last window from the first multiple of ``align`` that
    lets it reach the song's end. ``align`` is the codec's frame hop: every window then
    starts on the frame grid of a whole-song encoding. The last window is cut at the
    song's end (it may be shorter than ``window``): no window runs past the song, so no
    zero padding is ever needed.

    A song not longer than one window is a single window at 0.
    """
    if hop < 1 or hop > window:
        raise ConfigError(f"hop must be in [1, window={window}] samples, got {hop}")
    if align < 1:
        raise ConfigError(f"align must be >= 1 sample, got {align}")
    if length <= window:
        return [0]
    offsets = list(range(0, length - window + 1, hop))
    if offsets[-1] + window < length:
        last = -(-(length - window) // align) * align
        offsets.append(last)
    return offsets


def overlap_add(fn: WindowFn, x_input: Tensor, x_target: Tensor, *, window: int, hop: int,
                align: int = 1, batch_size: int = 4, device: torch.device | str = "cpu",
                crossfade: str = "triangle",
                progress: Callable[[int], None] | None = None,
                on_masks: Callable[[Masks, int], None] | None = None) -> Tensor:
    """Run ``fn`` over two aligned CPU signals in crossfaded windows and put the result together.

    ``x_input``, ``x_target``: ``[N]`` float32 on the CPU, same length. Windows start as
    :func:`window_offsets` says (``align``: the codec's frame hop). ``fn`` receives
    ``[B, 1, W]`` windows of both on ``device`` (B <= ``batch_size``; W = ``window``, less
    for the last window or a song shorter than a window) and returns ``([B, 1, W]`` audio, masks or None).
    The output ``[N]`` is preallocated on the CPU; each batch's result is weighted by
    :func:`crossfade_weight`, added in, and at the end divided by the running sum of the
    weights. ``progress(k)`` is called after each batch with the number of windows done;
    ``on_masks(masks, B)`` with each batch's masks.
    """
    if x_input.dim() != 1 or x_input.shape != x_target.shape:
        raise ValueError(f"overlap_add expects two [N] signals of the same length, got "
                         f"{tuple(x_input.shape)} and {tuple(x_target.shape)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    n = x_input.shape[0]
    if n == 0:
        raise AudioError("nothing to arrange: the aligned songs are empty")
    offsets = window_offsets(n, window, hop, align)
    win = min(window, n)
    weight = crossfade_weight(win, crossfade)
    out = torch.zeros(n, dtype=torch.float32)

    # Batches of consecutive windows of one length (the last window may be shorter).
    batches: list[list[int]] = []
    for o in offsets:
        if batches and len(batches[-1]) < batch_size and min(win, n - batches[-1][0]) == min(win, n - o):
            batches[-1].append(o)
        else:
            batches.append([o])
    done = 0
    for batch in batches:
        m = min(win, n - batch[0])
        xi = torch.stack([x_input[o:o + m] for o in batch]).unsqueeze(1).to(device)
        xt = torch.stack([x_target[o:o + m] for o in batch]).unsqueeze(1).to(device)
        y, masks = fn(xi, xt)
        if tuple(y.shape) != (len(batch), 1, m):
            raise ValueError(f"the arrangement returned audio of shape {tuple(y.shape)} for windows of "
                             f"shape {(len(batch), 1, m)}")
        if masks is not None and on_masks is not None:
            on_masks(masks, len(batch))
        y = y.detach().to("cpu", torch.float32)[:, 0]
        w = weight[:m]
        for k, o in enumerate(batch):
            out[o:o + m].add_(y[k] * w)
        done += len(batch)
        if progress is not None:
            progress(done)
    # Divide by the running sum of the weights, block by block (no second song-long array).
    for a in range(0, n, _NORM_BLOCK):
        b = min(n, a + _NORM_BLOCK)
        out[a:b].div_(_weight_sum(a, b, offsets, n, weight))
    return out


def _weight_sum(a: int, b: int, offsets: list[int], n: int, weight: Tensor) -> Tensor:
    """Sum of the crossfade weights of every window over samples ``[a, b)``."""
    win = weight.shape[0]
    total = torch.zeros(b - a, dtype=weight.dtype)
    for o in offsets[bisect.bisect_right(offsets, a - win):]:
        if o >= b:
            break
        lo, hi = max(o, a), min(o + win, n, b)
        if hi > lo:
            total[lo - a:hi - a].add_(weight[lo - o:hi - o])
    return total


# -- building what runs over the windows -------------------------------------------------------

def _style_kw(style: int | None, batch: int, device: torch.device) -> dict[str, Any]:
    return {} if style is None else {"style": torch.full((batch,), style, dtype=torch.long, device=device)}


def _model_fn(model: nn.Module, codec: Any, hard: bool, style: int | None = None) -> WindowFn:
    def fn(xi: Tensor, xt: Tensor) -> tuple[Tensor, Masks | None]:
        ei, et = codec.encode(xi), codec.encode(xt)
        res = model(ei, et, hard=hard, return_masks=True, **_style_kw(style, ei.shape[0], ei.device))
        masks = res[2] if isinstance(res, tuple) and len(res) > 2 else None
        enc = res[0] if isinstance(res, tuple) else res
        return codec.decode(enc, length=xi.shape[-1]), masks
    return fn


def _mix_fn(strategy: MaskStrategy, codec: Any, hard: bool, style: int | None = None) -> WindowFn:
    checked = False

    def fn(xi: Tensor, xt: Tensor) -> tuple[Tensor, Masks | None]:
        nonlocal checked
        ei, et = codec.encode(xi), codec.encode(xt)
        kw = {"hard": hard, **_style_kw(style, ei.shape[0], ei.device)}
        if checked:
            masks = strategy(ei, et, **kw)
        else:  # once: a plugin's failure or bad masks get an error naming it
            masks = call_strategy(strategy, ei, et, **kw)
            checked = True
        mi, mt = masks.apply(ei, et)
        # Each masked song decoded on its own, then mixed as audio: a codec's encodings need
        # not add like audio (the stft codec's are power-compressed: a song plus itself would
        # come out 4x as loud, not 2x). One decode call for both.
        both = codec.decode(torch.cat([mi, mt]), length=xi.shape[-1])
        return both[: xi.shape[0]] + both[xi.shape[0]:], masks
    return fn


def frame_hop(codec: Any) -> int:
    """Samples per encoding frame (``sample_rate / spec.frame_rate``), 1 when the codec does
    not give a whole number."""
    fr = getattr(codec.spec, "frame_rate", None)
    if not fr:
        return 1
    hop = codec.sample_rate / fr
    return int(round(hop)) if abs(hop - round(hop)) < 1e-6 and hop >= 1 else 1


def _check_output_path(output: str | os.PathLike) -> Path:
    """Fail before any work when the output cannot be written as audio."""
    from .audio import AUDIO_EXTENSIONS

    path = Path(output)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(f"{path}: cannot write '{path.suffix or '(no extension)'}' files; use one of "
                         f"{', '.join(AUDIO_EXTENSIONS)}")
    return check_output_file(path, "--output")  # (a folder, a place that takes no file, ...)


def _duration(source: AudioSource, label: str) -> float | None:
    """Seconds of a file (header only); None for a tensor or array (its rate is the codec's)."""
    if isinstance(source, Tensor | np.ndarray):
        return None
    if not isinstance(source, str | os.PathLike):
        from .audio import tensor_mono

        tensor_mono(source, label)  # type: ignore[arg-type]  # the error naming what it got
    from .audio import audio_info

    info = audio_info(source)  # missing, unreadable, corrupt: an AudioError naming the file
    return info.frames / info.sample_rate


def _load(source: AudioSource, sample_rate: int, label: str, max_seconds: float | None = None) -> Tensor:
    """A song as ``[N]`` float32 mono at ``sample_rate``; tensors are taken to be at that rate.

    A file is read, mixed down and resampled :data:`LOAD_BLOCK_SECONDS` at a time into one
    preallocated tensor (:func:`maskkit.audio.load_audio` reads context around each block,
    so the blocks join exactly as a whole-file read would); only the first ``max_seconds``
    are read when given.
    """
    from .audio import load_audio, tensor_mono

    if isinstance(source, Tensor | np.ndarray):
        return tensor_mono(source, label)

    seconds = _duration(source, label)
    assert seconds is not None
    if max_seconds is not None:
        seconds = min(seconds, max_seconds)
    capacity = int(math.ceil(seconds * sample_rate)) + 1
    out = torch.empty(capacity, dtype=torch.float32)
    pos, start = 0, 0
    while start < seconds and pos < capacity:
        dur = min(LOAD_BLOCK_SECONDS, seconds - start)
        block = load_audio(source, sample_rate, mono=True, offset_seconds=start, duration_seconds=dur)[0]
        m = min(block.shape[0], capacity - pos)
        out[pos:pos + m] = block[:m]
        pos += m
        if block.shape[0] < int(round(dur * sample_rate)):  # the file ended before its header said
            break
        start += LOAD_BLOCK_SECONDS
    return out[:pos]


def align(x_input: Tensor, x_target: Tensor, length: str | float | int = "shortest",
          fill: str = "loop", sample_rate: int | None = None) -> tuple[Tensor, Tensor]:
    """Bring two ``[N]`` songs to one length.

    ``length``: ``"shortest"`` (cut the longer), ``"longest"`` (extend the shorter) or a
    number of seconds (needs ``sample_rate``; both cut or extended). ``fill``: how to extend,
    ``"loop"`` (repeat the song from its start) or ``"pad"`` (silence).
    """
    if fill not in ("loop", "pad"):
        raise ConfigError(f"fill must be 'loop' or 'pad', got {fill!r}")
    ni, nt = x_input.shape[-1], x_target.shape[-1]
    if length == "shortest":
        n = min(ni, nt)
    elif length == "longest":
        n = max(ni, nt)
    else:
        try:
            seconds = float(length)
        except (TypeError, ValueError):
            raise ConfigError(f"length must be 'shortest', 'longest' or a number of seconds, "
                              f"got {length!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"length in seconds must be a finite number > 0, got {length!r}")
        if sample_rate is None:
            raise ConfigError("align: a length in seconds needs sample_rate")
        n = int(round(seconds * sample_rate))

    def fit(x: Tensor) -> Tensor:
        if x.shape[-1] >= n:
            return x[:n]
        if x.shape[-1] == 0:
            raise AudioError("cannot extend an empty song")
        if fill == "pad":
            return torch.nn.functional.pad(x, (0, n - x.shape[-1]))
        return x.repeat(math.ceil(n / x.shape[-1]))[:n]

    return fit(x_input), fit(x_target)


def load_for_inference(checkpoint: str | os.PathLike,
                       device: torch.device | str = "cpu") -> tuple[nn.Module, Any, float]:
    """``(model, codec, segment_seconds)`` rebuilt from a checkpoint alone (eval mode, on
    ``device``) with :func:`maskkit.train.load_model`; the segment is the training one."""
    from .train import load_model

    loaded = load_model(checkpoint, map_location=device)
    return loaded.model, loaded.codec, loaded.segment_seconds


# -- the public entry point ---------------------------------------------------------------------

@torch.inference_mode()
def arrange(input: AudioSource, target: AudioSource, output: str | os.PathLike | None = None, *,
            checkpoint: str | os.PathLike | None = None,
            model: nn.Module | None = None,
            codec: Any = None,
            strategy: str | MaskStrategy | None = None,
            strategy_options: Any = None,
            mix_only: bool = False,
            hard: bool | None = None,
            sample_rate: int | None = None,
            length: str | float = "shortest",
            fill: str = "loop",
            window_seconds: float | None = None,
            overlap: float = 0.5,
            crossfade: str = "triangle",
            batch_size: int = 4,
            device: torch.device | str | None = "cpu",
            progress: bool = False,
            style: str | int | None = None) -> ArrangeResult:
    """Make an arrangement of two whole songs and (with ``output``) write it.

    ``input``, ``target``: audio files (any format soundfile reads, any rate, mono or
    stereo: mixed down and resampled to the codec's rate) or tensors / NumPy arrays ``[N]`` /
    ``[C, N]`` of float samples already at the codec's rate.

    What runs over each window:

    - ``checkpoint``: the trained model and codec rebuilt from the file
      (:func:`maskkit.train.load_model`); the window is the training segment;
    - ``model`` + ``codec``: a model object (called as ``model(enc_input, enc_target,
      hard=..., return_masks=True)``) and a codec (instance or name);
    - ``mix_only=True``: no model at all: the strategy's masks applied to both encodings,
      each masked song decoded and the two mixed (added as audio; needs ``strategy`` or a
      checkpoint);
    - ``strategy`` (name or instance, with ``strategy_options``): replaces the model's
      strategy. A model trained with another strategy may sound different with it.

    ``sample_rate``: the output's rate (default: the codec's). ``length``/``fill``: see
    :func:`align`. ``window_seconds`` overrides the window; ``overlap`` (0 < overlap < 1,
    default 0.5) sets ``hop = window * (1 - overlap)``; ``crossfade``: ``"triangle"`` or
    ``"hann"``. ``batch_size`` windows go to ``device`` at a time (``"auto"``: CUDA when
    available). ``progress``: a rich progress bar. ``style``: condition the masks on a style
    label (a model trained with ``--style-labels``): a name of the checkpoint's styles, or a
    label index; ``None`` (default): unconditioned. ``hard``: hard (0/1) or soft masks;
    ``None`` (default): hard when the model trained on them (``maskkit train --hard-masks``).

    Both songs are read (and the output's format checked) before any work, so a missing
    or unreadable file raises :class:`~maskkit.errors.AudioError` naming it and nothing is
    written; the output is written atomically by :func:`maskkit.audio.save_audio`.
    """
    from .codec import resolve_codec
    from .plugins import build_untrained

    dev = resolve_device(device)
    out_path = _check_output_path(output) if output is not None else None
    if out_path is not None and out_path.exists():
        for label, src in (("input", input), ("target", target)):
            src_path = os.path.expanduser(src) if isinstance(src, str | os.PathLike) else None
            if src_path is not None and os.path.exists(src_path) and os.path.samefile(src_path, out_path):
                raise ConfigError(f"{out_path}: the output is the {label} song; writing it would destroy "
                                  f"the song: choose another output name")
    if not 0.0 < overlap < 1.0:
        raise ConfigError(f"overlap must be between 0 and 1 (exclusive), got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if window_seconds is not None and window_seconds <= 0:
        raise ConfigError(f"window_seconds must be > 0, got {window_seconds}")
    if length not in ("shortest", "longest"):
        align(torch.zeros(1), torch.zeros(1), length, fill, 1)  # raises ConfigError on a bad value
    # Both headers are read before anything else: a wrong path fails at once, naming the file.
    durations = (_duration(input, "input"), _duration(target, "target"))

    ckpt_seconds = None
    style_names: list[str] | None = None
    if checkpoint is not None:
        if model is not None:
            raise ConfigError("give either checkpoint or model, not both")
        from .train import load_model

        if strategy is not None and not isinstance(strategy, str) and strategy_options:
            raise ConfigError("strategy_options is only used with a strategy given by name")
        # --strategy with a checkpoint: built in place of the trained one, which is then neither
        # built nor loaded (its plugin need not be installed); with --codec, on that codec's spec
        by_name = isinstance(strategy, str)
        loaded = load_model(checkpoint, map_location=dev, strategy=strategy,
                            strategy_options=strategy_options, codec=codec)
        model, codec = loaded.model, loaded.codec
        if strategy is not None:
            strategy, strategy_options = model.strategy, None
            if by_name:
                warn_untrained(strategy, "arrange")
        ckpt_seconds = loaded.segment_seconds
        style_names = loaded.styles
    if hard is None:  # as the model trained: hard masks after maskkit train --hard-masks
        hard = bool(getattr(getattr(model, "config", None), "hard_masks", False))
    style_index = resolve_style(style, style_names, checkpoint or (
        "the model object given (pass the label index)" if model is not None and not mix_only
        else "a strategy without a checkpoint"))
    codec = resolve_codec(codec).to(dev).eval()
    sr = int(codec.sample_rate)

    if isinstance(strategy, str):
        strategy = build_untrained(strategy, strategy_options, spec=codec.spec)
        warn_untrained(strategy, "arrange")
    elif strategy_options:
        raise ConfigError("strategy_options is only used with a strategy given by name")
    swapped = None
    if strategy is not None:
        strategy = strategy.to(dev).eval()
        if model is not None and not mix_only:
            swapped = model.strategy  # put back at the end: the caller's model is left as it was
            model.strategy = strategy  # a fixed rule instead of the trained one
    if mix_only:
        if strategy is None:
            strategy = getattr(model, "strategy", None)
        if strategy is None:
            raise ConfigError("mix_only needs a strategy (strategy=NAME) or a checkpoint to take it from")
        check_style(strategy, style_index)
        fn = _mix_fn(strategy, codec, hard, style_index)
        name = strategy.name
    else:
        if model is None:
            raise ConfigError("arrange needs a checkpoint (or a model), or mix_only=True with a strategy")
        model = model.to(dev).eval()
        check_style(getattr(model, "strategy", None), style_index)
        fn = _model_fn(model, codec, hard, style_index)
        name = getattr(getattr(model, "strategy", None), "name", "") or type(model).__name__

    seconds = window_seconds or ckpt_seconds or DEFAULT_WINDOW_SECONDS
    if window_seconds is not None and ckpt_seconds is not None and window_seconds > ckpt_seconds * 1.01 \
            and not mix_only:
        warn(f"arrange: windows of {window_seconds:g} s, longer than the {ckpt_seconds:g} s segments the "
             f"model trained on: it has never seen pairs that long (leave --window out to use the "
             f"training segment)")
    # Window and hop in whole codec frames, so that every window's frames fall on one grid;
    # the window rounded down, so that it never holds more frames than the training segment.
    step = frame_hop(codec)
    window = max(step, int(seconds * sr + 1e-6) // step * step)
    hop = max(step, int(round(window * (1.0 - overlap) / step)) * step)
    hop = min(hop, window)

    # Read no more than the arrangement will use.
    if length == "shortest":
        known = [d for d in durations if d is not None]
        max_seconds = min(known) + 1.0 / sr if known else None
    elif length == "longest":
        max_seconds = None
    else:
        max_seconds = float(length) + 1.0 / sr
    xi = _load(input, sr, "input", max_seconds)
    xt = _load(target, sr, "target", max_seconds)
    xi, xt = align(xi, xt, length, fill, sr)
    n = xi.shape[-1]
    if n == 0:
        raise AudioError("nothing to arrange: one of the songs is empty")
    if (n < window and length == "shortest" and None not in durations
            and max(durations) * sr >= window):  # type: ignore[type-var]
        short = "input" if durations[0] < durations[1] else "target"  # type: ignore[operator]
        warn(f"arrange: the {short} song is {n / sr:.2f} s, shorter than one window "
             f"({window / sr:.2f} s), so the arrangement is only {n / sr:.2f} s long "
             f"(--length shortest); pass --length longest to keep the other song's length")
    from .audio import warn_if_silent

    for label, x in (("input song", xi), ("target song", xt)):
        warn_if_silent(x, label, "arrange")
    n_windows = len(window_offsets(n, window, hop, step))

    sums: dict[str, float] = {}
    count = 0

    def on_masks(masks: Masks, b: int) -> None:
        nonlocal count
        for k, v in mask_metrics(masks.input_mask, masks.target_mask).items():
            sums[k] = sums.get(k, 0.0) + v * b
        count += b

    bar = _progress_bar(n_windows) if progress else None
    try:
        audio = overlap_add(fn, xi, xt, window=window, hop=hop, align=step, batch_size=batch_size,
                            device=dev, crossfade=crossfade, progress=bar.update if bar else None,
                            on_masks=on_masks)
    finally:
        if bar is not None:
            bar.close()
        if swapped is not None:
            model.strategy = swapped
    del xi, xt
    out_sr = sr
    if sample_rate is not None and int(sample_rate) != sr:
        from .audio import resample

        audio = resample(audio, sr, int(sample_rate))
        out_sr = int(sample_rate)
    audio = audio.unsqueeze(0)
    if out_path is not None:
        from .audio import save_audio

        save_audio(out_path, audio, out_sr)
    return ArrangeResult(audio=audio, sample_rate=out_sr, path=out_path, strategy=name, mix_only=mix_only,
                         window=min(window, n), hop=hop, num_windows=n_windows,
                         metrics={k: v / count for k, v in sums.items()} if count else {},
                         style=(style_names[style_index] if style_names and style_index is not None
                                else style_index), hard=hard)


class _ProgressBar:
    """A rich progress bar over windows (only made when asked for)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("arranging"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                           TimeRemainingColumn())
        self._task = self._p.add_task("arrange", total=total)
        self._p.start()

    def update(self, done: int) -> None:
        self._p.update(self._task, completed=done)

    def close(self) -> None:
        self._p.stop()


def _progress_bar(total: int) -> _ProgressBar:
    return _ProgressBar(total)


__all__: Sequence[str] = ["arrange", "ArrangeResult", "align", "overlap_add", "window_offsets",
                          "crossfade_weight", "frame_hop", "load_for_inference", "DEFAULT_WINDOW_SECONDS"]


class _CallableModule(types.ModuleType):
    """``maskkit.arrange`` is both this module and the function: once a submodule is
    imported, Python binds the package attribute ``maskkit.arrange`` to the module, so the
    module itself forwards calls to :func:`arrange`. ``maskkit.arrange(...)`` and
    ``maskkit.arrange.arrange(...)`` are the same call."""

    def __call__(self, *args: Any, **kwargs: Any) -> ArrangeResult:
        return arrange(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # inspect.signature(maskkit.arrange): the function's, for IDEs
        import inspect

        return inspect.signature(arrange)


sys.modules[__name__].__class__ = _CallableModule
