"""Audio files in and out: read, write, resample, mix down, cut into segments, normalize.

Everything goes through ``soundfile`` (libsndfile: WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...)
and ``torchaudio.functional.resample``; ``torchaudio.load``/``save`` are not used (they need
torchcodec). Conventions:

- In memory, audio is a float32 tensor ``[C, N]``, channels first. soundfile returns
  ``[frames, channels]`` (``always_2d=True``): the channel axis is always the last one of
  what it returns, never guessed from the shape.
- :func:`load_audio` reads only the frames it needs (seek, then read), so a 4-second crop of
  a one-hour file costs a 4-second read.
- Every problem with a file raises :class:`maskkit.errors.AudioError` whose message starts
  with the file's path: missing, unreadable, empty, corrupt, truncated, unsupported format,
  silent, too short. Nothing here returns NaN or Inf: non-finite samples in a file are an
  error, and normalizing silence returns silence.
- :func:`save_audio` never clips (it rescales, with a :class:`ClippingWarning`) and writes
  atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from .checkpoint import atomic_write
from .errors import AudioError, warn

#: libsndfile keeps the message of a failed open in one global: files are opened one at a time, so
#: that the message an error quotes is its own file's when threads check a folder
#: (:func:`maskkit.data.scan_part`). Reading and decoding happen outside it.
_OPENING = threading.Lock()

__all__ = [
    "AUDIO_EXTENSIONS",
    "UNSUPPORTED_AUDIO_EXTENSIONS",
    "IGNORE_MARKER",
    "SILENCE_DB",
    "AudioInfo",
    "ClippingWarning",
    "audio_info",
    "check_audio",
    "find_audio_files",
    "load_audio",
    "load_segment",
    "save_audio",
    "mixdown",
    "resample",
    "normalize_loudness",
    "peak_db",
    "is_silent",
    "loud_blocks",
    "warn_if_silent",
]

#: Extensions read as audio (libsndfile decodes them).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                                     ".w64", ".rf64", ".caf")
#: Audio formats that libsndfile cannot decode: reported as "unsupported format", never ignored.
UNSUPPORTED_AUDIO_EXTENSIONS: tuple[str, ...] = (".m4a", ".aac", ".alac", ".wma", ".mp4", ".m4b", ".ape",
                                                 ".wv", ".mpc", ".ac3", ".dts", ".amr", ".webm", ".mka",
                                                 ".mp2", ".ra", ".dsf", ".dff", ".mid", ".midi")
#: A folder holding a file of this name is skipped when songs are searched (e.g. the stems
#: that ``maskkit data synth`` writes beside its songs).
IGNORE_MARKER = ".maskkit-ignore"
#: The most channels an audio array may have (more: the axes are the other way round).
MAX_CHANNELS = 64
#: A file (or crop) whose peak is below this level (dBFS) counts as silent.
SILENCE_DB = -70.0

_FORMATS_BY_EXT = {
    ".wav": ("WAV", None), ".flac": ("FLAC", None), ".ogg": ("OGG", "VORBIS"), ".oga": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III"), ".aif": ("AIFF", None),
    ".aiff": ("AIFF", None), ".w64": ("W64", None), ".rf64": ("RF64", None), ".caf": ("CAF", None),
}
_WRITE_BLOCK = 32768  # frames per write call: libvorbis overflows its stack on long single writes
_WAV_SIZE_MISMATCH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be\s*(\d+)\)", re.MULTILINE)


class ClippingWarning(UserWarning):
    """:func:`save_audio` rescaled audio whose peak exceeded 1 to avoid clipping."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: rate, channels, length, format."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


# -- finding and checking files --------------------------------------------------------------

def _fail(path: str | os.PathLike, problem: str) -> AudioError:
    return AudioError(f"{os.fspath(path)}: {problem}")


def _check_readable(path: str | os.PathLike) -> None:
    """Existence, kind, permission and emptiness, with a message naming the file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise _fail(p, "no such file")
    if os.path.isdir(p):
        raise _fail(p, "is a directory, not an audio file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except PermissionError:
        raise _fail(p, "cannot be read (permission denied)") from None
    except OSError as e:
        raise _fail(p, f"cannot be read ({e.strerror or e})") from None
    if not head:
        raise _fail(p, "is empty (0 bytes)")


def _check_extension(path: str | os.PathLike) -> None:
    ext = Path(path).suffix.lower()
    if ext in UNSUPPORTED_AUDIO_EXTENSIONS:
        raise _fail(path, f"unsupported format '{ext}' (readable formats: "
                          f"{', '.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)}); convert it, "
                          f"e.g. with ffmpeg -i IN OUT.flac")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file (reads no samples).

    Raises :class:`AudioError` naming the file when it is missing, unreadable, empty, of an
    unsupported format, not audio, without frames, or a WAV whose data chunk was cut short.
    """
    p = os.path.expanduser(os.fspath(path))  # "~/music/a.wav" as a shell would read it
    _check_readable(p)
    _check_extension(p)
    try:
        with _OPENING:
            info = sf.info(p)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise _fail(p, f"not a readable audio file or corrupt ({_sf_message(e)})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise _fail(p, f"corrupt header (sample rate {info.samplerate}, {info.channels} channels)")
    if info.frames <= 0:
        raise _fail(p, "holds no audio frames")
    m = _WAV_SIZE_MISMATCH.search(info.extra_info or "")
    if m is not None:
        declared, actual = int(m.group(1)), int(m.group(2))
        # 0 and 0xFFFFFFFF are what streaming writers put when they do not know the size.
        if actual < declared < 0xFFFFFFF0:
            raise _fail(p, f"truncated (its header announces {declared} bytes of audio, the file "
                           f"holds {actual})")
    return AudioInfo(path=p, sample_rate=int(info.samplerate), channels=int(info.channels),
                     frames=int(info.frames), format=str(info.format), subtype=str(info.subtype))


def _below_silence(peak: float) -> bool:
    return peak <= 0 or 20 * math.log10(peak) < SILENCE_DB


def _sf_message(e: BaseException) -> str:
    msg = str(e).strip()
    # soundfile prefixes the path; keep only libsndfile's words
    if "Error opening" in msg and ":" in msg:
        msg = msg.split(":", 2)[-1].strip()
    return msg or type(e).__name__


def peak_db(audio: Tensor | np.ndarray) -> float:
    """Peak level in dBFS (``-inf`` for digital silence)."""
    peak = float(np.abs(np.asarray(audio)).max()) if np.asarray(audio).size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def is_silent(audio: Tensor | np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True when the peak is below ``threshold_db`` dBFS."""
    return peak_db(audio) < threshold_db


def warn_if_silent(audio: Tensor | np.ndarray, label: str, command: str) -> bool:
    """Warn (and return True) when ``audio`` is silent: masks of silence say nothing about it."""
    pk = peak_db(audio)
    if pk >= SILENCE_DB:
        return False
    level = "every sample is zero" if pk == float("-inf") else f"peak {pk:.1f} dBFS"
    warn(f"{command}: the {label} is silent ({level}, below {SILENCE_DB:g} dBFS), so the "
         f"masks say nothing about it")
    return True


def _read_frames(f: sf.SoundFile, path: str, start: int, frames: int, *, seek: bool = True) -> np.ndarray:
    """``[frames, channels]`` float32 from ``start`` (fewer at the end of the file).

    ``seek=False``: the file is already at ``start`` (a block-by-block read); ``start`` then
    only serves the error messages, which give the true frame of a problem.
    """
    try:
        if start and seek:
            f.seek(start)
        data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise _fail(path, f"corrupt or truncated: reading {frames} frames at frame {start} failed "
                          f"({_sf_message(e)})") from None
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise _fail(path, f"holds NaN or infinite samples (the first at frame {first}, "
                          f"{first / max(f.samplerate, 1):.3f} s)")
    return data


def check_audio(path: str | os.PathLike, *, min_seconds: float = 0.0, slack_seconds: float = 0.0,
                full: bool = False, probe_seconds: float = 1.0, probes: int = 4) -> AudioInfo:
    """Check that a file is usable: header, length, decodability, not silent.

    ``min_seconds``: the file must be at least this long (a training segment), short by at most
    ``slack_seconds`` (what :func:`load_segment` pads).
    ``full=True`` decodes the whole file block by block (what ``maskkit data check`` does):
    it finds corrupt or truncated data anywhere and measures the true peak. Otherwise
    ``probes`` windows of ``probe_seconds`` spread over the file are decoded, the last one
    ending at the file's announced end (that finds files cut short after their header was
    written); a file whose probes are all silent is then decoded to the end (or to its first
    sound) before it is called silent. Silence is judged on the mono mix that training and
    ``arrange`` use: a stereo file whose channels cancel out is silent. Returns the :class:`AudioInfo`
    (with ``frames`` corrected to what could be read in full mode) or raises
    :class:`AudioError` naming the file and the problem.
    """
    info = audio_info(path)
    p = info.path
    # (in full mode the length is checked after decoding: a damaged file that is also short is
    # reported as damaged, the problem a shorter segment would not cure)
    if not full and info.duration + slack_seconds + 1e-9 < min_seconds:
        raise _fail(p, f"too short: {info.duration:.2f} s, shorter than one segment "
                       f"({min_seconds:g} s)")
    peak = 0.0  # of the mono mix (what training and arrange read)
    raw_peak = 0.0  # of any channel

    def measure(data: np.ndarray) -> None:
        nonlocal peak, raw_peak
        if data.size:
            raw_peak = max(raw_peak, float(np.abs(data).max()))
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
            peak = max(peak, float(np.abs(mono).max()))

    try:
        with _OPENING:
            f = sf.SoundFile(p)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise _fail(p, f"corrupt ({_sf_message(e)})") from None
    with f:
        if full:
            read = 0
            block = 1 << 16
            while True:
                data = _read_frames(f, p, read, block, seek=False)
                if data.shape[0] == 0:
                    break
                read += data.shape[0]
                measure(data)
            if read < info.frames * 0.99 - info.sample_rate * 0.05:
                raise _fail(p, f"truncated: its header announces {info.frames} frames "
                               f"({info.duration:.2f} s), only {read} could be decoded")
            decodable = "" if read == info.frames else " decodable"
            if read != info.frames:
                info = AudioInfo(p, info.sample_rate, info.channels, read, info.format, info.subtype)
            if read / info.sample_rate + slack_seconds + 1e-9 < min_seconds:
                raise _fail(p, f"too short: {read / info.sample_rate:.2f} s{decodable}, shorter than "
                               f"one segment ({min_seconds:g} s)")
        else:
            win = max(1, int(probe_seconds * info.sample_rate))
            if info.frames <= win * probes:
                starts = [0]
                win = info.frames
            else:
                last = info.frames - win
                starts = [int(round(last * i / (probes - 1))) for i in range(probes)]
            for s in starts:
                data = _read_frames(f, p, s, win)
                if data.shape[0] < min(win, info.frames - s) - max(1, int(0.05 * info.sample_rate)):
                    raise _fail(p, f"truncated: its header announces {info.frames} frames "
                                   f"({info.duration:.2f} s), reading at frame {s} stopped after "
                                   f"{data.shape[0]} of {win}")
                measure(data)
            if _below_silence(peak) and len(starts) > 1:
                # Every probe is quiet: decode the rest before calling it silent, so that a song
                # with sound only between the probes is kept (and training agrees with the
                # full check of `maskkit data check`).
                read, block = 0, 1 << 16
                f.seek(0)
                while _below_silence(peak):
                    data = _read_frames(f, p, read, block, seek=False)
                    if data.shape[0] == 0:
                        break
                    read += data.shape[0]
                    measure(data)
    if _below_silence(peak):
        where = ""
        level = "every sample is zero" if raw_peak <= 0 else \
            f"peak {20 * math.log10(peak):.1f} dBFS, below {SILENCE_DB:g} dBFS" if peak > 0 else \
            "every sample of the mono mix is zero"
        if not _below_silence(raw_peak):  # loud channels that cancel when mixed down
            where = (f" once its channels are mixed to mono (they cancel out: a channel peaks at "
                     f"{20 * math.log10(raw_peak):.1f} dBFS; one channel in opposite polarity?)")
        raise _fail(p, f"silent: {level}{where}")
    return info


def find_audio_files(root: str | os.PathLike, *, recursive: bool = True
                     ) -> tuple[list[Path], list[Path], list[Path]]:
    """Files under ``root``: ``(audio, unsupported_audio, ignored)``, each sorted.

    ``audio`` have an extension of :data:`AUDIO_EXTENSIONS`; ``unsupported_audio`` look like
    audio that libsndfile cannot decode (``.m4a``, ``.wma``, ...); ``ignored`` is everything
    else (cover art, text, hidden files). Folders holding a :data:`IGNORE_MARKER` file, and
    hidden folders, are skipped. Symbolic links are followed, but a file or folder reached twice
    (a duplicate link, a hard link, a link back up the tree) is taken once: the other paths to
    it are ``ignored``. The order is by path, independent of the filesystem.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise AudioError(f"{base}: not a directory")
    audio: list[Path] = []
    unsupported: list[Path] = []
    ignored: list[Path] = []

    def on_error(e: OSError) -> None:
        raise AudioError(f"{e.filename}: cannot list folder ({e.strerror})")

    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(base, onerror=on_error, followlinks=True):
        real = os.path.realpath(dirpath)
        if IGNORE_MARKER in filenames or real in seen_dirs:  # a linked folder seen before, or a loop
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            ext = path.suffix.lower()
            if name.startswith("."):
                ignored.append(path)
            elif ext in AUDIO_EXTENSIONS:
                audio.append(path)
            elif ext in UNSUPPORTED_AUDIO_EXTENSIONS:
                unsupported.append(path)
            else:
                ignored.append(path)
        if not recursive:
            dirnames[:] = []
    # a song reached twice through links (symbolic or hard) is one song (or a pair could join it
    # with itself, or put it in both the training and the validation split): the first path in
    # order is kept
    kept: dict[Any, Path] = {}
    for path in sorted(audio):
        try:
            st = os.stat(path)
            key: Any = (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)
        except OSError:  # (a broken link: kept, check_audio names it)
            key = os.path.realpath(path)
        if key in kept:
            ignored.append(path)
        else:
            kept[key] = path
    return list(kept.values()), sorted(unsupported), sorted(ignored)


# -- transforms ------------------------------------------------------------------------------

def mixdown(audio: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """``[C, N]`` -> ``[1, N]``: the mean of the channels (a mono one is returned as is), of a
    tensor or a NumPy array (returned as the same kind; NumPy on the data-loading path, as in
    :func:`normalize_loudness`)."""
    if audio.ndim != 2:
        raise ValueError(f"mixdown expects [channels, samples], got shape {tuple(audio.shape)}")
    if audio.shape[0] == 1:
        return audio
    if isinstance(audio, np.ndarray):
        return audio.mean(axis=0, keepdims=True, dtype=np.float32)
    return audio.mean(dim=0, keepdim=True)


#: Rates whose ratio in lowest terms has a term above this are resampled by :func:`_sinc_resample`.
_FILTER_BANK_MAX_TERM = 1024
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio's defaults (zero crossings, cutoff)


def resample(audio: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited resampling along the last axis: windowed-sinc, as ``torchaudio.functional.resample``.

    torchaudio builds one filter per output phase, ``new / gcd`` filters of about
    ``orig / gcd`` taps: instant for standard rates (44.1 kHz to 24 kHz is 80 filters), but
    an odd rate such as 47,999 Hz to 24 kHz needs 24,000 filters of 48,000 taps and takes
    tens of seconds a file. Such rates are computed by :func:`_sinc_resample` instead: the
    same interpolation formula evaluated at each output's own position (equal to
    torchaudio's to float rounding, at a cost independent of the ratio).
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return audio
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig_sr} and {new_sr}")
    g = math.gcd(orig_sr, new_sr)
    if max(orig_sr, new_sr) // g > _FILTER_BANK_MAX_TERM:
        return _sinc_resample(audio, orig_sr, new_sr)
    import torchaudio.functional as AF

    return AF.resample(audio, orig_sr, new_sr, lowpass_filter_width=_LOWPASS_WIDTH, rolloff=_ROLLOFF)


def _sinc_resample(audio: Tensor, orig_sr: int, new_sr: int, *, chunk_elements: int = 1 << 22) -> Tensor:
    """Resample ``[..., N]`` by evaluating the windowed-sinc interpolation at each output's position.

    Output ``n`` sits at input position ``p = n * orig / new`` (exact integer arithmetic for the
    whole part); it is ``sum_i x[i] h((i - p) s) s`` over the inputs within the filter's
    reach, with ``s = rolloff * min(1, new / orig)`` (the low-pass cutoff relative to the input
    rate), ``h(u) = sinc(u) cos^2(pi u / 2w)`` for ``|u| <= w`` (``w`` zero crossings, a Hann
    window) and zero beyond, and ``x`` zero outside the signal. ``ceil(N * new / orig)``
    outputs, as torchaudio. Works through the outputs in chunks of ``chunk_elements`` taps.
    """
    shape = audio.shape
    x = audio.reshape(-1, shape[-1])
    if not x.is_floating_point():
        x = x.float()
    n_in = x.shape[-1]
    n_out = -(-n_in * new_sr // orig_sr)
    s = _ROLLOFF * min(1.0, new_sr / orig_sr)
    reach = math.ceil(_LOWPASS_WIDTH / s)
    taps = torch.arange(-reach, reach + 2, device=x.device)  # inputs floor(p) - reach .. floor(p) + reach + 1
    xp = torch.nn.functional.pad(x, (reach, reach + 2))  # input i sits at i + reach
    out = x.new_empty(x.shape[0], n_out)
    step = max(1, chunk_elements // (taps.numel() * max(1, x.shape[0])))
    kernel_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    for a in range(0, n_out, step):
        n = torch.arange(a, min(a + step, n_out), device=x.device, dtype=torch.int64)
        whole = n * orig_sr // new_sr
        frac = (n * orig_sr - whole * new_sr).to(kernel_dtype) / new_sr
        u = ((taps[None, :] - frac[:, None]) * s).clamp_(-_LOWPASS_WIDTH, _LOWPASS_WIDTH)
        h = (torch.sinc(u) * torch.cos(u * (math.pi / (2 * _LOWPASS_WIDTH))).square() * s).to(x.dtype)
        idx = whole[:, None] + taps[None, :] + reach
        out[:, a:a + n.numel()] = torch.einsum("cmk,mk->cm", xp[:, idx], h)
    return out.reshape(*shape[:-1], n_out)


def normalize_loudness(audio: Tensor | np.ndarray, *, target_db: float = -20.0, peak: float = 0.99,
                       max_gain_db: float = 30.0) -> Tensor | np.ndarray:
    """Scale each item to an RMS of ``target_db`` dBFS, never past ``peak`` nor ``max_gain_db``.

    Works on ``[..., N]`` per leading index (``[1, N]`` or ``[B, 1, N]``), on a tensor or a
    NumPy array (returned as the same kind; NumPy is used on the data-loading path, where
    it is single-threaded and immune to busy cores). Loudness-safe: the gain is the
    smallest of (RMS target, peak limit, gain cap), so the result never clips, near-silence
    is not blown up into noise, and digital silence stays exactly zero (no division by
    zero, no NaN).
    """
    target = 10.0 ** (target_db / 20.0)
    cap = 10.0 ** (max_gain_db / 20.0)
    tiny = float(np.finfo(np.float32).tiny)
    if isinstance(audio, np.ndarray):
        x = np.asarray(audio, dtype=np.float32)
        flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)
        rms = np.sqrt(np.mean(np.square(flat, dtype=np.float64), axis=-1))
        pk = np.abs(flat).max(axis=-1).astype(np.float64) if flat.shape[-1] else np.zeros(flat.shape[0])
        gain = np.minimum(np.minimum(target / np.maximum(rms, tiny), peak / np.maximum(pk, tiny)), cap)
        gain = np.where(pk > 0, gain, 0.0).astype(np.float32)
        return (flat * gain[:, None]).reshape(x.shape)
    x = audio.float()
    flat = x.reshape(-1, x.shape[-1]) if x.dim() > 1 else x.reshape(1, -1)
    rms = flat.pow(2).mean(dim=-1).sqrt()
    pk = flat.abs().amax(dim=-1)
    gain = torch.minimum(target / rms.clamp_min(tiny), peak / pk.clamp_min(tiny)).clamp(max=cap)
    gain = torch.where(pk > 0, gain, torch.zeros_like(gain))
    out = flat * gain[:, None]
    return out.reshape(x.shape).to(audio.dtype if audio.is_floating_point() else torch.float32)


# -- reading ---------------------------------------------------------------------------------

def load_audio(path: str | os.PathLike, sample_rate: int, *, mono: bool = True, offset_seconds: float = 0.0,
               duration_seconds: float | None = None, info: AudioInfo | None = None) -> Tensor:
    """Read (part of) a file as float32 ``[1, N]`` (``mono``) or ``[C, N]`` at ``sample_rate``.

    Only the frames from ``offset_seconds`` for ``duration_seconds`` are read (seek + read);
    with ``duration_seconds`` the result has ``round(duration_seconds * sample_rate)``
    samples unless the file ends first (then fewer). A few milliseconds of context on each
    side are read and dropped after resampling, so a crop resamples as the whole file would.
    Raises :class:`AudioError` naming the file on any problem; the samples are finite. ``info``:
    the file's :func:`audio_info`, when the caller has it (a data set reading many crops of
    the songs it scanned), so that the header is not read again.
    """
    if info is None:
        info = audio_info(path)
    p, src_sr = info.path, info.sample_rate
    if offset_seconds < 0:
        raise ValueError(f"load_audio: offset_seconds must be >= 0, got {offset_seconds}")
    start = int(round(offset_seconds * src_sr))
    if start >= info.frames:
        raise _fail(p, f"offset {offset_seconds:.2f} s is past the end of the file ({info.duration:.2f} s)")
    if duration_seconds is None:
        n_out = None
        n_src = info.frames - start
    else:
        if duration_seconds <= 0:
            raise ValueError(f"load_audio: duration_seconds must be > 0, got {duration_seconds}")
        n_out = int(round(duration_seconds * sample_rate))
        n_src = min(int(math.ceil(n_out * src_sr / sample_rate)), info.frames - start)
    # Context for the resampling filter, a whole number of resampling periods so that the
    # output grid stays aligned with `start`.
    if src_sr != sample_rate:
        period = src_sr // math.gcd(src_sr, int(sample_rate))
        want = period * max(1, int(math.ceil(0.004 * src_sr / period)))
        left = min(start // period, want // period) * period
        right = min(want, info.frames - (start + n_src))
    else:
        period, left, right = 1, 0, 0
    try:
        with _OPENING:
            f = sf.SoundFile(p)
    except (sf.LibsndfileError, RuntimeError) as e:
        _check_readable(p)  # gone or unreadable since it was scanned: say that
        raise _fail(p, f"corrupt ({_sf_message(e)})") from None
    with f:
        data = _read_frames(f, p, start - left, left + n_src + right)
    got = data.shape[0] - left
    if got < n_src - max(1, int(0.05 * src_sr)):
        raise _fail(p, f"truncated: its header announces {info.frames} frames ({info.duration:.2f} s), "
                       f"reading {n_src} frames at frame {start} returned {max(got, 0)}")
    # [C, frames]: soundfile's axis 1 is channels; the mix in NumPy (single-threaded: a tiny torch op
    # waits for every OpenMP thread, which on busy cores takes a thousand times longer)
    frames = mixdown(data.T) if mono else data.T
    audio = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    if src_sr != sample_rate:
        audio = resample(audio, src_sr, sample_rate)
        skip = left * int(sample_rate) // src_sr
        keep = int(round(min(got, n_src) * sample_rate / src_sr))
        audio = audio[:, skip: skip + keep]
    else:
        audio = audio[:, : min(got, n_src)]
    if n_out is not None:
        audio = audio[:, :n_out]
    return audio.contiguous()


def loud_blocks(path: str | os.PathLike, block_seconds: float, threshold_db: float) -> list[float]:
    """Start times (seconds) of the ``block_seconds`` blocks of a file whose mono mix peaks at or
    above ``threshold_db`` dBFS: where a song has sound. Reads the file once, block by block, at
    its own rate (no resampling)."""
    info = audio_info(path)
    block = max(1, int(round(block_seconds * info.sample_rate)))
    level = 10.0 ** (threshold_db / 20.0)
    starts: list[float] = []
    with _OPENING:
        opened = sf.SoundFile(info.path)
    with opened as f:
        pos = 0
        while True:
            try:
                data = _read_frames(f, info.path, pos, block, seek=False)
            except AudioError:  # a damaged part: the blocks before it still serve (crops elsewhere load)
                break
            if data.shape[0] == 0:
                break
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
            if float(np.abs(mono).max()) >= level:
                starts.append(pos / info.sample_rate)
            pos += data.shape[0]
    return starts


def load_segment(path: str | os.PathLike, sample_rate: int, segment_seconds: float,
                 offset_seconds: float = 0.0, *, normalize: bool = True, info: AudioInfo | None = None
                 ) -> Tensor:
    """Exactly ``round(segment_seconds * sample_rate)`` mono samples ``[1, N]`` from ``offset``.

    A shortfall of up to 50 ms at the end of the file (rounding, MP3 length estimates) is
    padded with zeros; more is an :class:`AudioError` ("shorter than a segment"). With
    ``normalize`` the segment goes through :func:`normalize_loudness` (peak <= 0.99).
    """
    n = int(round(segment_seconds * sample_rate))
    audio = load_audio(path, sample_rate, mono=True, offset_seconds=offset_seconds,
                       duration_seconds=segment_seconds, info=info)
    short = n - audio.shape[-1]
    if short > max(1, int(0.05 * sample_rate)):
        raise _fail(path, f"too short: {audio.shape[-1] / sample_rate:.2f} s from {offset_seconds:.2f} s, "
                          f"shorter than one segment ({segment_seconds:g} s)")
    if short > 0:
        audio = torch.nn.functional.pad(audio, (0, short))
    if normalize:
        audio = torch.from_numpy(normalize_loudness(audio.numpy()))  # (NumPy: see load_audio)
    return audio


# -- writing ---------------------------------------------------------------------------------

def _to_frames(audio: Any) -> np.ndarray:
    """``[N]`` or ``[C, N]`` (channels first) tensor/array -> ``[N, C]`` float32 for soundfile."""
    if isinstance(audio, Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"save_audio expects [samples] or [channels, samples], got shape {a.shape}")
    if a.shape[0] > MAX_CHANNELS:
        raise ValueError(f"save_audio expects channels first ([channels, samples]); got shape {a.shape} "
                         f"(more than {MAX_CHANNELS} channels); transpose it")
    return np.ascontiguousarray(a.T)


def tensor_mono(audio: Tensor | np.ndarray, label: str) -> Tensor:
    """A ``[N]`` or ``[C, N]`` (channels first) tensor or NumPy array as ``[N]`` float32 mono on
    the CPU (the channels averaged). Any other shape, integer samples, NaN or infinite samples
    or a tensor without data ("meta") is an :class:`AudioError` naming ``label``."""
    if isinstance(audio, np.ndarray):
        if audio.dtype.kind != "f":
            raise AudioError(f"{label}: expected float samples in [-1, 1], got a NumPy array of {audio.dtype}"
                             + (" (integer PCM: divide by its full scale, e.g. 32768 for 16-bit)"
                                if audio.dtype.kind in "iu" else ""))
        audio = torch.from_numpy(audio.astype(np.float32))  # a native-order, writable copy
    if not isinstance(audio, Tensor):
        raise AudioError(f"{label}: expected an audio file, a tensor or a NumPy array, got "
                         f"{type(audio).__name__}")
    if audio.dim() not in (1, 2):
        raise AudioError(f"{label}: expected audio of shape [N] or [C, N], got {tuple(audio.shape)}")
    if audio.dim() == 2 and audio.shape[0] > MAX_CHANNELS:
        # never guess the channel axis: soundfile.read and scipy give [N, C], this takes [C, N]
        raise AudioError(f"{label}: expected audio of shape [N] or [C, N] (channels first), got "
                         f"{tuple(audio.shape)}: {audio.shape[0]} channels? For [N, C] samples (as "
                         f"soundfile.read gives them) pass the transpose, x.T")
    if not audio.is_floating_point():
        raise AudioError(f"{label}: expected float samples in [-1, 1], got {audio.dtype} (integer PCM: "
                         f"divide by its full scale, e.g. 32768 for 16-bit)")
    if audio.is_meta:
        raise AudioError(f"{label}: a 'meta' tensor holds no samples")
    x = audio.detach().to("cpu", torch.float32)
    if x.dim() == 2:
        x = x.mean(dim=0)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise AudioError(f"{label}: {int(bad.sum())} NaN or infinite sample(s), the first at sample "
                         f"{first}")
    return x.contiguous()


def save_audio(path: str | os.PathLike, audio: Tensor | np.ndarray, sample_rate: int, *,
               subtype: str | None = None, peak: float = 0.999, limit: bool = True) -> Path:
    """Write ``audio`` (``[N]`` or ``[C, N]``, channels first) to ``path``; the format follows
    the extension (``.wav`` ``.flac`` ``.ogg`` ``.mp3`` ...).

    A peak above 1 would clip: the audio is scaled to ``peak`` and a
    :class:`ClippingWarning` says by how much. ``limit=False`` writes it as it is, for the
    ``FLOAT`` / ``DOUBLE`` subtypes, which hold any level (a stem that must sum to its mix).
    NaN/Inf samples raise :class:`AudioError`.
    The file appears complete or not at all (temporary file + ``os.replace``); parent
    folders are created. ``subtype`` defaults to PCM_16 for WAV/AIFF/FLAC and the codec's
    own for OGG/MP3. Returns the path.
    """
    out = Path(path).expanduser()
    ext = out.suffix.lower()
    if ext not in _FORMATS_BY_EXT:
        raise AudioError(f"{out}: cannot write '{ext}' files; use one of "
                         f"{', '.join(sorted(_FORMATS_BY_EXT))}")
    fmt, default_subtype = _FORMATS_BY_EXT[ext]
    if fmt in ("WAV", "AIFF", "FLAC", "W64", "RF64", "CAF") and default_subtype is None:
        default_subtype = "PCM_16"
    frames = _to_frames(audio)
    if not np.isfinite(frames).all():
        raise AudioError(f"{out}: refusing to write NaN or infinite samples")
    if not limit and (subtype or default_subtype) not in ("FLOAT", "DOUBLE"):
        raise ValueError(f"save_audio: limit=False needs subtype FLOAT or DOUBLE, got "
                         f"{subtype or default_subtype}")
    pk = float(np.abs(frames).max()) if frames.size else 0.0
    if pk > 1.0 and limit:
        frames = frames * np.float32(peak / pk)
        warn(f"save_audio: {out}: peak {pk:.3f} would clip; scaled by {peak / pk:.3f} "
             f"({20 * math.log10(peak / pk):.1f} dB)", ClippingWarning)

    def write(f: Any) -> None:
        with sf.SoundFile(f, "w", samplerate=int(sample_rate), channels=frames.shape[1], format=fmt,
                          subtype=subtype or default_subtype) as snd:
            for i in range(0, frames.shape[0], _WRITE_BLOCK):
                snd.write(frames[i: i + _WRITE_BLOCK])

    try:
        return atomic_write(out, write)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{out}: writing failed ({e})") from e

