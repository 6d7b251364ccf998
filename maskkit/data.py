"""Training data: pairs of audio segments ``(input, target)`` as torch Datasets.

Three sources, chosen by :func:`make_datasets` from a single ``source`` string:

- ``None`` / ``"synthetic"``: :class:`SyntheticPairs`, songs rendered on the fly by
  :mod:`maskkit.synth` (no download, no files);
- a folder with ``train/pair_XXXX_input.wav`` + ``pair_XXXX_output.wav`` (and ``val/...``):
  :class:`WavPairs`, the original project's layout, used as is;
- any other folder: :class:`FolderPairs`, pairs of segments from two *different* songs of
  a (nested) folder of songs, split into train/val *by song*.

Every item is ``(input_audio, target_audio)``: float32 tensors ``[1, N]`` with
``N = round(segment_seconds * sample_rate)``, finite, peak <= 1 (loudness-normalized by
:func:`maskkit.audio.normalize_loudness`).

Determinism (exact resume, DDP): an item depends only on ``(seed, epoch, index)``. Each
item draws from its own ``numpy.random.Generator`` seeded with those numbers, never from a
global RNG, so the order in which workers or ranks fetch items does not matter. Training
sets draw new crops / new songs each epoch (:meth:`PairDataset.set_epoch`); validation sets
ignore the epoch. ``len()`` never changes. The epoch lives in shared memory, so
``set_epoch`` also reaches persistent DataLoader workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._version import __version__
from .audio import (
    IGNORE_MARKER,
    AudioInfo,
    audio_info,
    check_audio,
    find_audio_files,
    load_segment,
    loud_blocks,
    normalize_loudness,
    peak_db,
    save_audio,
)
from .checkpoint import atomic_write
from .errors import AudioError, ConfigError, warn
from .paths import check_output_dir

__all__ = [
    "iter_batches",
    "PairDataset",
    "SyntheticPairs",
    "WavPairs",
    "FolderPairs",
    "SongCatalog",
    "scan_songs",
    "split_songs",
    "detect_layout",
    "make_datasets",
    "build_pairs_folder",
    "PairsSummary",
    "FileReport",
    "check_folder",
]

_TRAIN, _VAL = 1, 2  # RNG stream ids
_SILENT_CROP_DB = -50.0  # a crop quieter than this is re-drawn (a few tries) in training data
_CROP_TRIES = 4
_LISTED_BAD = 10  # bad files named in one error
_SKIP_HINT = " (pass --skip-bad / skip_bad=True to skip bad files)"
_PAIR_RE = re.compile(r"^pair_(.+)_input\.wav$", re.IGNORECASE)


class PairDataset(Dataset):
    """Base class of maskkit's pair datasets: epoch, per-item RNG, skipped-file summary."""

    def __init__(self, *, sample_rate: int, segment_seconds: float, seed: int, train: bool) -> None:
        if sample_rate <= 0:
            raise ConfigError(f"sample_rate must be > 0, got {sample_rate}")
        if segment_seconds <= 0:
            raise ConfigError(f"segment_seconds must be > 0, got {segment_seconds}")
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.num_samples = int(round(segment_seconds * sample_rate))
        self.seed = int(seed)
        self.train = bool(train)
        #: ``(path, reason)`` of every file left out because of ``skip_bad``.
        self.skipped: list[tuple[str, str]] = []
        self._epoch = torch.zeros(1, dtype=torch.int64)
        try:  # shared with DataLoader workers, persistent ones included
            self._epoch.share_memory_()
        except (RuntimeError, OSError):  # pragma: no cover - platforms without shared memory
            pass

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: training sets draw new pairs from ``(seed, epoch, index)``."""
        self._epoch[0] = int(epoch)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line: what the set holds and how many bad files were skipped."""
        kind = "train" if self.train else "val"
        line = f"{type(self).__name__} ({kind}): {len(self)} pairs of {self.segment_seconds:g} s " \
               f"at {self.sample_rate} Hz"
        if self.skipped:
            line += f"; skipped {len(self.skipped)} bad file(s)"
        return line

    def _rng(self, index: int, salt: int = 0) -> np.random.Generator:
        epoch = self.epoch if self.train else 0
        stream = _TRAIN if self.train else _VAL
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, stream, epoch, int(index), salt])

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} pairs")
        return index % n

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    #: The style labels of the set (``None``: it has none); see :meth:`style_of`.
    style_names: tuple[str, ...] | None = None

    def style_of(self, index: int) -> int:
        """The style label (an index into ``style_names``) of item ``index``: its target song's."""
        raise ConfigError(f"{type(self).__name__} has no style labels")


class StyledPairs(Dataset):
    """A pair dataset whose items carry their style label: ``(input, target, style)``.

    ``style`` is an index into ``dataset.style_names`` (the target song's label: the style
    the arrangement should lean towards). Everything else is the wrapped dataset's.
    """

    def __init__(self, dataset: PairDataset) -> None:
        if not getattr(dataset, "style_names", None):
            raise ConfigError(f"{type(dataset).__name__} has no style labels")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        x_in, x_tg = self.dataset[index]
        return x_in, x_tg, self.dataset.style_of(index)

    def __getattr__(self, name: str) -> Any:  # set_epoch, style_names, skipped, summary, ...
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


# -- synthetic --------------------------------------------------------------------------------

class SyntheticPairs(PairDataset):
    """Pairs of two different synthetic songs rendered on the fly (:mod:`maskkit.synth`).

    Item ``i`` renders two songs whose seeds are drawn from ``(seed, epoch, i)``; training
    sets get new songs every epoch, validation sets (``train=False``) always the same ones,
    disjoint from training's (a separate RNG stream).
    """

    def __init__(self, num_pairs: int, *, seconds: float = 4.0, sample_rate: int = 24000, seed: int = 0,
                 train: bool = True) -> None:
        super().__init__(sample_rate=sample_rate, segment_seconds=seconds, seed=seed, train=train)
        if num_pairs < 1:
            raise ConfigError(f"SyntheticPairs: num_pairs must be >= 1, got {num_pairs}")
        self.num_pairs = int(num_pairs)

    def __len__(self) -> int:
        return self.num_pairs

    def song_seeds(self, index: int) -> tuple[int, int]:
        """The :func:`maskkit.synth.generate_song` seeds of item ``index`` (this epoch)."""
        index = self._index(index)
        a, b = (int(v) for v in self._rng(index).integers(0, 2**62, size=2))
        if a == b:  # pragma: no cover - probability 2**-62
            b += 1
        return a, b

    @property
    def style_names(self) -> tuple[str, ...]:  # type: ignore[override]
        from .synth import GROOVES

        return GROOVES

    def style_of(self, index: int) -> int:
        """The target song's drum groove (:data:`maskkit.synth.GROOVES`)."""
        from .synth import GROOVES, describe_song

        return GROOVES.index(describe_song(self.song_seeds(index)[1]).groove)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        from .synth import generate_song

        a, b = self.song_seeds(index)
        out = []
        for s in (a, b):
            x = np.zeros(self.num_samples, np.float32)
            song = generate_song(s, self.segment_seconds, self.sample_rate)
            x[: song.shape[0]] = song[: self.num_samples]  # generate_song gives exactly N samples
            out.append(torch.from_numpy(normalize_loudness(x)).view(1, -1))
        return out[0], out[1]


# -- folder of songs ----------------------------------------------------------------------------

@dataclass
class SongCatalog:
    """The usable songs of a folder and the files left out (``skip_bad``)."""

    root: str
    songs: list[AudioInfo]
    bad: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def scan_songs(root: str | os.PathLike, *, segment_seconds: float = 4.0, skip_bad: bool = False,
               full: bool = False, progress: Callable[[str], None] | None = None) -> SongCatalog:
    """Find and check the songs of a folder (recursively).

    Each audio file goes through :func:`maskkit.audio.check_audio` (``full`` decodes it all;
    otherwise a few windows are probed). A bad file raises :class:`AudioError` naming it,
    or with ``skip_bad`` is recorded in ``bad`` and left out. Files with an audio extension
    libsndfile cannot read (``.m4a`` ...) are bad files too; other files are ignored.
    ``progress(text)`` is called for each file as it is done, ``text`` = ``"i/N path"``.

    The same as :func:`join_scan` of the one :func:`scan_part` of the whole folder: processes
    of a training job check a share of the files each and join their parts.
    """
    part = scan_part(root, segment_seconds=segment_seconds, full=full, progress=progress)
    return join_scan(root, [part], skip_bad=skip_bad)


@dataclass
class ScanPart:
    """The files of a folder and the checks of one share of its audio files (:func:`scan_part`)."""

    audio: list[str]
    unsupported: list[str]
    ignored: list[str]
    shard: tuple[int, int]
    #: for each audio file of the share, in order: its AudioInfo, or (message, reason) when bad
    results: list[AudioInfo | tuple[str, str]]
    #: a digest of the three lists: processes compare it instead of sending the lists
    digest: str = ""
    #: (size, mtime_ns) of each audio file of the share when it was checked (for :func:`write_scan_cache`)
    stats: list[tuple[int, int] | None] = field(default_factory=list)
    #: how many of the share's results came from the ``known`` checks of an earlier scan
    reused: int = 0

    def __post_init__(self) -> None:
        if not self.digest:
            text = "\n".join(["\0".join(x) for x in (self.audio, self.unsupported, self.ignored)])
            self.digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def indices(self, n_files: int) -> range:
        """The positions, among a folder's ``n_files`` audio files, of this share's results."""
        return range(self.shard[0], n_files, self.shard[1])

    def results_only(self) -> ScanPart:
        """This part without the folder's file lists (what the other processes need of it)."""
        return dataclasses.replace(self, audio=[], unsupported=[], ignored=[])


def scan_part(root: str | os.PathLike, *, segment_seconds: float = 4.0, full: bool = False,
              shard: tuple[int, int] = (0, 1), threads: int | None = None,
              progress: Callable[[str], None] | None = None,
              known: Mapping[str, Any] | None = None) -> ScanPart:
    """List the files of ``root`` and check the audio files ``shard = (k, n)`` falls on (every
    n-th from the k-th), ``threads`` at once (default: up to 8, as many as this process may
    use). ``known``: the checks of an earlier scan with the same settings
    (:func:`read_scan_cache`); a file whose size and modification time are unchanged keeps its
    result instead of being read again. Raises only when the folder cannot be listed."""
    root = os.path.expanduser(os.fspath(root))  # (the keys of ``known`` are relative to it)
    audio, unsupported, ignored = find_audio_files(root)
    k, n = shard
    mine = audio[k::n]
    stats = [_stat(p) for p in mine]
    results: list[AudioInfo | tuple[str, str] | None] = [None] * len(mine)
    if known:
        for i, (path, st) in enumerate(zip(mine, stats, strict=True)):
            if st is not None:
                results[i] = _cached_result(known.get(os.path.relpath(path, root)), st, path)
    todo = [i for i, r in enumerate(results) if r is None]

    def check(path: Path) -> AudioInfo | tuple[str, str]:
        try:
            return check_audio(path, min_seconds=segment_seconds, full=full)
        except AudioError as e:
            return str(e), _reason(e, path)

    # A few threads: decoding (libsndfile, NumPy) runs without the GIL, and a library of
    # thousands of files is checked before the first step (1.4x on 2 cores).
    reused = len(mine) - len(todo)
    with _pool(len(todo), threads) as pool:
        for j, (i, got) in enumerate(zip(todo, pool.map(check, [mine[i] for i in todo]), strict=True)):
            if progress is not None:
                progress(f"{reused + j + 1}/{len(mine)} {mine[i]}")
            results[i] = got
    return ScanPart([str(p) for p in audio], [str(p) for p in unsupported], [str(p) for p in ignored],
                    (k, n), results, stats=stats, reused=reused)  # type: ignore[arg-type]


#: The file of a run folder that keeps its start-up check of a folder of songs, so that a resumed
#: run reads again only the files that changed (:func:`read_scan_cache`, :func:`write_scan_cache`).
SCAN_CACHE = ".songs-checked.json"
_SCAN_CACHE_VERSION = 1


def _stat(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)


def _cached_result(entry: Any, stat: tuple[int, int], path: str | os.PathLike) -> AudioInfo | None:
    """A song's kept check, when its file has the size and modification time it had then and is
    still readable; None (check it again) otherwise, for a file that failed (the cause may have
    been the file system's, not the file's: fixed permissions change no mtime) and for an entry
    that does not read."""
    try:
        size, mtime, facts = entry
        if (int(size), int(mtime)) != stat or "bad" in facts or not os.access(path, os.R_OK):
            return None
        return AudioInfo(path=str(path), sample_rate=int(facts["sample_rate"]),
                         channels=int(facts["channels"]), frames=int(facts["frames"]),
                         format=str(facts["format"]), subtype=str(facts["subtype"]))
    except (TypeError, ValueError, KeyError):
        return None


def read_scan_cache(path: str | os.PathLike, *, segment_seconds: float, full: bool = False
                    ) -> dict[str, Any] | None:
    """The ``known`` checks of :func:`scan_part` kept in ``path`` by :func:`write_scan_cache`, when
    they were made with the same settings and maskkit version (None otherwise, or when the file is
    missing or damaged). A file replaced by another of the same size and modification time
    (``cp -p`` of a same-length file) keeps the old check: delete the file to check everything."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if (data.get("version") != _SCAN_CACHE_VERSION or data.get("full") != bool(full)
                or float(data.get("segment_seconds", -1)) != float(segment_seconds)
                or data.get("maskkit") != __version__):  # (another maskkit may check otherwise)
            return None
        files = data["files"]
        return files if isinstance(files, dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_scan_cache(path: str | os.PathLike, root: str | os.PathLike, parts: Sequence[ScanPart],
                     listing: ScanPart, *, segment_seconds: float, full: bool = False) -> None:
    """Keep the checks of one folder's scan (every share's :class:`ScanPart`; ``listing`` with the
    file lists) in ``path``, keyed by each file's path relative to ``root``, with its size and
    modification time. Best effort: a folder that cannot be written is left as it is."""
    root = os.path.expanduser(os.fspath(root))
    files: dict[str, Any] = {}
    for part in parts:
        for i, got, st in zip(part.indices(len(listing.audio)), part.results, part.stats, strict=True):
            if st is None:
                continue
            entry = ({"bad": got[1]} if isinstance(got, tuple) else
                     {"sample_rate": got.sample_rate, "channels": got.channels, "frames": got.frames,
                      "format": got.format, "subtype": got.subtype})
            files[os.path.relpath(listing.audio[i], root)] = [st[0], st[1], entry]
    data = {"version": _SCAN_CACHE_VERSION, "maskkit": __version__, "segment_seconds": float(segment_seconds),
            "full": bool(full), "files": files}
    try:
        atomic_write(path, lambda f: f.write(json.dumps(data).encode("utf-8")))
    except OSError:
        pass


def join_scan(root: str | os.PathLike, parts: Sequence[ScanPart], *, skip_bad: bool = False,
              listing: ScanPart | None = None) -> SongCatalog:
    """The :class:`SongCatalog` of the parts of one folder's scan (one per share, every share
    there): the songs in path order; bad files raise (naming them all) unless ``skip_bad``.
    ``listing``: the part whose file lists to use (parts may come without theirs,
    :meth:`ScanPart.results_only`); by default the first part."""
    first = listing if listing is not None else parts[0]
    for part in parts:
        if part.digest != first.digest:
            raise AudioError(f"{root}: the processes of this job see different files there: give every "
                             f"node the same folder")
    results: dict[int, AudioInfo | tuple[str, str]] = {}
    for part in parts:
        results.update(zip(part.indices(len(first.audio)), part.results, strict=True))
    songs: list[AudioInfo] = []
    bad: list[tuple[str, str]] = []
    messages: list[str] = []  # every bad file's, so that one run names them all
    for path in first.unsupported:
        suffix = Path(path).suffix.lower()
        bad.append((path, f"unsupported format '{suffix}'"))
        messages.append(f"{path}: unsupported format '{suffix}'; convert it to FLAC/WAV/OGG/MP3")
    for i, path in enumerate(first.audio):
        got = results[i]
        if isinstance(got, AudioInfo):
            songs.append(got)
        else:
            messages.append(got[0])
            bad.append((path, got[1]))
    if not skip_bad:
        _refuse_bad(messages, root, [reason for _, reason in bad])
    return SongCatalog(root=str(root), songs=songs, bad=bad, ignored=list(first.ignored))


@contextlib.contextmanager
def _pool(n_files: int, threads: int | None = None) -> Iterator[Any]:
    """A thread pool for checking ``n_files`` files (one thread for a few: no start-up cost)."""
    from concurrent.futures import ThreadPoolExecutor

    from .distributed import usable_cpus

    workers = 1 if n_files < 16 else (threads if threads is not None else min(8, usable_cpus()))
    if workers == 1:
        yield _Serial()
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="maskkit-scan") as pool:
        yield pool


class _Serial:
    @staticmethod
    def map(fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        return map(fn, items)


def _reason(e: AudioError, path: str | os.PathLike) -> str:
    """The message of ``e`` without the file's path in front (a path may hold ': ' itself)."""
    text, prefix = str(e), f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text.split(": ", 1)[-1]


def problem_summary(reasons: Sequence[str]) -> str:
    """How many bad files of each kind, from their problems (as :func:`scan_songs` records them
    in ``bad``): "300 unsupported format '.m4a', 201 too short"."""
    counts: dict[str, int] = {}
    for r in reasons:
        kind = re.split(r"[:(;,]", r, maxsplit=1)[0].strip() or r
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _refuse_bad(messages: Sequence[str], root: str | os.PathLike, reasons: Sequence[str] = ()) -> None:
    """One :class:`AudioError` naming every bad file of a folder (their messages begin with
    the file's path), so that one run shows them all (many: the first ones and a count of each
    kind); nothing when there is none."""
    if not messages:
        return
    if len(messages) == 1:
        raise AudioError(messages[0] + _SKIP_HINT)
    shown = messages[:_LISTED_BAD]
    more = f"\n  ... and {len(messages) - len(shown)} more" if len(messages) > len(shown) else ""
    kinds = f" ({problem_summary(reasons)})" if reasons and len(messages) > len(shown) else ""
    raise AudioError(f"{len(messages)} bad files in {root}{kinds}{_SKIP_HINT}:\n  " + "\n  ".join(shown)
                     + more)


def _split_catalog(cat: SongCatalog, root: str | os.PathLike, val_fraction: float, segment_seconds: float
                   ) -> tuple[list[AudioInfo], list[AudioInfo]]:
    """:func:`split_songs` of a scanned folder; too few songs says how many files were skipped."""
    try:
        return split_songs(cat.songs, root, val_fraction)
    except AudioError as e:
        if not cat.bad:
            raise
        path, reason = cat.bad[0]
        raise AudioError(f"{e}; {len(cat.bad)} file(s) were skipped as bad (the first: {path}: {reason}); "
                         f"`maskkit data check {root} --segment-seconds {segment_seconds:g}` lists them"
                         ) from None


#: Songs a folder needs to train on: two for training and two for validation (a pair joins two
#: different songs, and training and validation never share one).
MIN_SONGS = 4


def split_songs(songs: Sequence[AudioInfo], root: str | os.PathLike, val_fraction: float = 0.1
                ) -> tuple[list[AudioInfo], list[AudioInfo]]:
    """Split songs into (train, val) by song: each song is in exactly one of the two.

    The order is a hash of each song's path relative to ``root``: it does not depend on the
    seed, the filesystem's listing order or where the folder is mounted, and adding songs
    moves few others. Each side gets at least 2 songs (a pair needs two different songs).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(songs)
    if n < MIN_SONGS:
        raise AudioError(f"{root}: {n} usable song(s); a folder of songs needs at least {MIN_SONGS} (two for "
                         f"training and two for validation, as each pair joins two different songs)")
    n_val = min(n - 2, max(2, int(round(val_fraction * n))))

    def rel(info: AudioInfo) -> str:
        return _song_key(info, root)

    ordered = sorted(songs, key=lambda i: hashlib.sha256(rel(i).encode("utf-8")).hexdigest())
    val = sorted(ordered[:n_val], key=rel)
    train = sorted(ordered[n_val:], key=rel)
    return train, val


def songs_fingerprint(train: Dataset, val: Dataset, root: str | os.PathLike) -> dict[str, Any] | None:
    """Which songs a run trains and validates on, for its checkpoints: the count and a digest of
    each side's song paths (relative to the folder ``root``, as :func:`split_songs` keys them);
    None for data that is not a folder of songs. A resumed run compares it with its own."""
    sides = [getattr(d, "dataset", d) for d in (train, val)]
    if not all(isinstance(d, FolderPairs) for d in sides):
        return None
    out: dict[str, Any] = {}
    for name, d in zip(("train", "val"), sides, strict=True):
        rel = sorted(_song_key(s, root) for s in d.songs)  # type: ignore[attr-defined]
        out[name] = {"songs": len(rel), "digest": hashlib.sha256("\n".join(rel).encode("utf-8")).hexdigest()}
    return out


def _song_key(info: AudioInfo, root: str | os.PathLike) -> str:
    """A song's path as the split sees it on every OS: relative, '/' separators, NFC (macOS may
    store 'é' as 'e' + accent)."""
    return unicodedata.normalize("NFC", os.path.relpath(info.path, root).replace(os.sep, "/"))


class FolderPairs(PairDataset):
    """Pairs of segments from two different songs of a list of songs.

    Item ``i`` takes song ``(i + epoch * num_pairs) % len(songs)`` as input (so every song is
    used in turn) and another song, drawn from ``(seed, epoch, i)``, as target; each gets a
    crop at an offset drawn the same way (training) or fixed by ``(seed, i)`` (validation).
    A crop quieter than -50 dBFS is re-drawn a few times (silent intros), then taken around a
    part of the song with sound (one read of the file finds them), so that a song with
    a long silence gives no silent pair: the loss of a silent reference is meaningless and
    very large. Build it from a
    folder with :meth:`from_folder` or through :func:`make_datasets`.
    """

    def __init__(self, songs: Sequence[AudioInfo], num_pairs: int, *, sample_rate: int = 24000,
                 segment_seconds: float = 4.0, seed: int = 0, train: bool = True,
                 song_styles: Sequence[str] | None = None, style_names: Sequence[str] | None = None) -> None:
        super().__init__(sample_rate=sample_rate, segment_seconds=segment_seconds, seed=seed, train=train)
        if len(songs) < 2:
            raise AudioError(f"FolderPairs needs at least 2 songs, got {len(songs)}")
        if num_pairs < 1:
            raise ConfigError(f"FolderPairs: num_pairs must be >= 1, got {num_pairs}")
        short = [s.path for s in songs if s.duration + 1e-9 < segment_seconds]
        if short:
            raise AudioError(f"{short[0]}: too short: shorter than one segment ({segment_seconds:g} s)")
        self.songs = list(songs)
        self.num_pairs = int(num_pairs)
        self._loud: dict[str, list[float]] = {}  # per song: starts of its blocks with sound
        # Style labels (optional): one per song; ``style_names`` fixes their order (the same
        # list for the training and the validation set).
        self.song_styles = list(song_styles) if song_styles is not None else None
        if self.song_styles is not None:
            if len(self.song_styles) != len(self.songs):
                raise ConfigError(f"FolderPairs: {len(self.song_styles)} style labels for "
                                  f"{len(self.songs)} songs")
            self.style_names = tuple(style_names or sorted(set(self.song_styles)))  # type: ignore[assignment]
            missing = sorted(set(self.song_styles) - set(self.style_names))
            if missing:
                raise ConfigError(f"FolderPairs: style label(s) {missing} not in style_names")
            self._style_index = [self.style_names.index(s) for s in self.song_styles]  # per song

    @classmethod
    def from_folder(cls, root: str | os.PathLike, num_pairs: int, *, split: str = "train",
                    val_fraction: float = 0.1, sample_rate: int = 24000, segment_seconds: float = 4.0,
                    seed: int = 0, skip_bad: bool = False) -> FolderPairs:
        """The ``split`` ("train" or "val") of a folder of songs."""
        if split not in ("train", "val"):
            raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
        cat = scan_songs(root, segment_seconds=segment_seconds, skip_bad=skip_bad)
        train, val = _split_catalog(cat, root, val_fraction, segment_seconds)
        ds = cls(train if split == "train" else val, num_pairs, sample_rate=sample_rate,
                 segment_seconds=segment_seconds, seed=seed, train=split == "train")
        ds.skipped = list(cat.bad)
        return ds

    def __len__(self) -> int:
        return self.num_pairs

    def _crop(self, info: AudioInfo, rng: np.random.Generator) -> tuple[Tensor, float]:
        span = max(0.0, info.duration - self.segment_seconds)
        best: tuple[float, Tensor, float] | None = None  # (peak dB, crop, offset)
        for attempt in range(_CROP_TRIES + 1):
            if attempt < _CROP_TRIES:
                offset = float(rng.uniform(0.0, span)) if span > 0 else 0.0
            else:  # every random crop was quiet (a long silent intro): a crop around sound
                offset = self._loud_offset(info, span, rng)
            x = load_segment(info.path, self.sample_rate, self.segment_seconds, offset, normalize=False,
                             info=info)
            level = peak_db(x)
            if best is None or level > best[0]:
                best = (level, x, offset)
            if level >= _SILENT_CROP_DB or span <= 0:
                break
        assert best is not None
        return torch.from_numpy(normalize_loudness(best[1].numpy())), best[2]  # NumPy: single-threaded

    def _loud_offset(self, info: AudioInfo, span: float, rng: np.random.Generator) -> float:
        """An offset whose segment holds a block of the song with sound (its start drawn from
        ``rng``); 0 when the song has none above the crop threshold. The song's loud blocks
        are found with one read of the file and kept by this dataset object (so once per
        DataLoader worker and epoch at most: only for songs whose random crops were all quiet)."""
        block = self.segment_seconds / 2
        if info.path not in self._loud:
            self._loud[info.path] = loud_blocks(info.path, block, _SILENT_CROP_DB)
        starts = self._loud[info.path]
        if not starts:
            return 0.0
        t = starts[int(rng.integers(0, len(starts)))]
        return float(min(max(t - rng.uniform(0.0, self.segment_seconds - block), 0.0), span))

    def _pair(self, index: int) -> tuple[int, int, np.random.Generator]:
        """Song indices ``(input, target)`` of item ``index`` and the RNG of its crops."""
        index = self._index(index)
        rng = self._rng(index)
        n = len(self.songs)
        a = (index + (self.epoch * self.num_pairs if self.train else 0)) % n
        b = int(rng.integers(0, n - 1))
        b += int(b >= a)
        return a, b, rng

    def style_of(self, index: int) -> int:
        """The style label of the target song (its subfolder; see :func:`make_datasets`)."""
        if self.song_styles is None or self.style_names is None:
            raise ConfigError("FolderPairs was built without style labels")
        return self._style_index[self._pair(index)[1]]

    def item_with_sources(self, index: int) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """The item and where it comes from: song paths and crop offsets (seconds)."""
        a, b, rng = self._pair(index)
        xa, oa = self._crop(self.songs[a], rng)
        xb, ob = self._crop(self.songs[b], rng)
        meta = {"input": {"path": self.songs[a].path, "offset": round(oa, 6)},
                "target": {"path": self.songs[b].path, "offset": round(ob, 6)}}
        return xa, xb, meta

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        xa, xb, _ = self.item_with_sources(index)
        return xa, xb


# -- the original's WAV-pairs layout -------------------------------------------------------------

def _pair_files(folder: Path) -> tuple[list[tuple[str, Path, Path | None]], list[Path]]:
    """``(id, input, output-or-None)`` for each ``pair_ID_input.wav``; and orphan outputs."""
    pairs: list[tuple[str, Path, Path | None]] = []
    outputs: set[str] = set()
    if not folder.is_dir():
        return [], []
    names = sorted(os.listdir(folder))
    lower = {n.lower(): n for n in names}
    for name in names:
        m = _PAIR_RE.match(name)
        if m:
            pid = m.group(1)
            out_name = lower.get(f"pair_{pid}_output.wav".lower())
            pairs.append((pid, folder / name, folder / out_name if out_name else None))
            if out_name:
                outputs.add(out_name)
    orphans = [folder / n for n in names
               if re.match(r"^pair_.+_output\.wav$", n, re.IGNORECASE) and n not in outputs]
    return pairs, orphans


class WavPairs(PairDataset):
    """The original project's layout: ``pair_XXXX_input.wav`` + ``pair_XXXX_output.wav``.

    ``folder`` is ``DIR/train`` or ``DIR/val``. Files at any rate and channel count are
    mixed down and resampled. Files longer than a segment are cropped: training crops draw
    an offset from ``(seed, epoch, index)`` (the same offset for input and output, so
    time-aligned pairs stay aligned); validation crops start at 0. A missing partner, or a
    bad or too-short file, raises :class:`AudioError` naming it, or with ``skip_bad``
    drops the pair and records it in ``skipped``.
    """

    def __init__(self, folder: str | os.PathLike, *, sample_rate: int = 24000, segment_seconds: float = 4.0,
                 seed: int = 0, train: bool = True, skip_bad: bool = False,
                 pairs: Sequence[tuple[str, Path, Path | None]] | None = None) -> None:
        super().__init__(sample_rate=sample_rate, segment_seconds=segment_seconds, seed=seed, train=train)
        self.folder = Path(folder)
        messages: list[str] = []  # every bad file's, so that one error names them all
        if pairs is None:
            if not self.folder.is_dir():
                raise AudioError(f"{self.folder}: not a directory")
            pairs, orphans = _pair_files(self.folder)
            for o in orphans:
                messages.append(f"{o}: has no matching {o.name[: -len('_output.wav')]}_input.wav")
                self.skipped.append((str(o), "no matching input file"))
        self.pairs: list[tuple[str, AudioInfo, AudioInfo]] = []
        for pid, inp, out in pairs:
            if out is None:  # (its input is not a bad file: it lacks a partner)
                messages.append(f"{inp}: has no matching pair_{pid}_output.wav")
                self.skipped.append((str(inp), f"has no matching pair_{pid}_output.wav"))
                continue
            infos = []
            for path in (inp, out):  # both files checked: one run names every bad one
                try:
                    # load_segment pads up to 50 ms
                    infos.append(check_audio(path, min_seconds=self.segment_seconds, slack_seconds=0.05,
                                             probe_seconds=2.0))
                except AudioError as e:
                    messages.append(str(e))
                    self.skipped.append((str(path), _reason(e, path)))
            if len(infos) == 2:
                self.pairs.append((pid, infos[0], infos[1]))
        if not skip_bad:
            _refuse_bad(messages, self.folder, [reason for _, reason in self.skipped])
        if not self.pairs:
            raise AudioError(f"{self.folder}: no usable pair_XXXX_input.wav / pair_XXXX_output.wav files"
                             + (f" ({len(self.skipped)} skipped as bad)" if self.skipped else ""))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        index = self._index(index)
        _, ia, ib = self.pairs[index]
        span = max(0.0, min(ia.duration, ib.duration) - self.segment_seconds)
        offset = float(self._rng(index).uniform(0.0, span)) if self.train and span > 0 else 0.0
        xa = load_segment(ia.path, self.sample_rate, self.segment_seconds, offset)
        xb = load_segment(ib.path, self.sample_rate, self.segment_seconds, offset)
        return xa, xb


# -- factory --------------------------------------------------------------------------------

def detect_layout(source: str | os.PathLike | None) -> str:
    """``"synthetic"``, ``"pairs"`` (``train/pair_*_input.wav`` present) or ``"songs"``."""
    if source is None or str(source) == "synthetic":
        return "synthetic"
    p = Path(source)
    if not p.exists():
        raise AudioError(f"{p}: no such file or directory (give a folder of songs, a WAV-pairs folder "
                         f"with train/ and val/, or 'synthetic')")
    if not p.is_dir():
        raise AudioError(f"{p}: is a file; give a folder of songs, a WAV-pairs folder or 'synthetic'")
    if _pair_files(p / "train")[0]:
        return "pairs"
    return "songs"


def _song_style(info: AudioInfo, root: Path) -> str:
    # the path as found under root (not resolved: a linked style folder keeps its own name, and
    # one that links outside root is still inside it here)
    rel = Path(info.path).relative_to(root)
    if len(rel.parts) < 2:
        raise ConfigError(f"--style-labels: the style of a song is the subfolder it is in "
                          f"({root}/<style>/song.wav), but {info.path} is directly in {root}: move it into "
                          f"a subfolder")
    return rel.parts[0]


def iter_batches(dataset: Any, batch_size: int, n: int | None = None, device: torch.device | str = "cpu"
                 ) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    """The first ``n`` items of a pair dataset (default: all), in order, as batches
    ``(input [B, 1, N], target [B, 1, N], style labels [B] or None)`` on ``device`` (evaluation
    and inspection read the validation split this way; training uses a DataLoader)."""
    n = len(dataset) if n is None else min(n, len(dataset))
    for start in range(0, n, batch_size):
        items = [dataset[j] for j in range(start, min(n, start + batch_size))]
        audio = [torch.stack([_mono(it[k]) for it in items]).to(device) for k in (0, 1)]
        style = torch.tensor([it[2] for it in items], device=device) if len(items[0]) > 2 else None
        yield audio[0], audio[1], style


def _mono(audio: Any) -> Tensor:
    """A dataset item's song as ``[1, N]`` float32."""
    t = torch.as_tensor(audio, dtype=torch.float32)
    return t.unsqueeze(0) if t.dim() == 1 else t


def make_datasets(source: str | None = None, *, sample_rate: int = 24000, segment_seconds: float = 4.0,
                  seed: int = 0, train_pairs: int = 256, val_pairs: int = 32, val_fraction: float = 0.1,
                  skip_bad: bool = False, style_labels: bool = False, catalog: SongCatalog | None = None
                  ) -> tuple[Dataset, Dataset]:
    """(train, val) datasets for ``source``.

    ``None`` or ``"synthetic"``: built-in synthetic music (``train_pairs`` / ``val_pairs``
    items). A folder holding ``train/pair_*_input.wav``: the WAV-pairs layout (its own
    counts; without ``val/`` pairs, the last ``val_fraction`` of train's pairs are held
    out, with a warning). Any other folder: pairs of segments of two different songs,
    split by song (``val_fraction`` of the songs, at least 2, go to validation). A bad path
    raises :class:`AudioError` naming it; bad files raise, or with ``skip_bad`` are skipped
    and listed in each dataset's ``skipped``.

    ``style_labels``: items are ``(input, target, style)`` (:class:`StyledPairs`), ``style``
    the target song's label: for a folder of songs the subfolder it is in
    (``DIR/jazz/a.wav`` -> ``jazz``; every song must be in one), for synthetic music its drum
    groove. The WAV-pairs layout has no labels.

    A folder of songs is scanned with :func:`scan_songs`, unless ``catalog`` is its scan already
    made (the trainer's processes each check a share of the files and join their parts).
    """
    if source is not None and str(source) != "synthetic":
        source = os.path.expanduser(str(source))  # "~/music" as a shell would read it
    layout = detect_layout(source)
    common = dict(sample_rate=sample_rate, segment_seconds=segment_seconds, seed=seed)
    if layout == "synthetic":
        synth = dict(seconds=segment_seconds, sample_rate=sample_rate, seed=seed)
        return _with_styles(SyntheticPairs(train_pairs, train=True, **synth),  # type: ignore[arg-type]
                            SyntheticPairs(val_pairs, train=False, **synth),  # type: ignore[arg-type]
                            style_labels)
    root = Path(str(source))
    if layout == "pairs" and style_labels:
        raise ConfigError(f"--style-labels: {root} holds WAV pairs, which carry no style labels; give a "
                          f"folder of songs in one subfolder per style ({root}/<style>/song.wav) or the "
                          f"synthetic data")
    if layout == "pairs":
        train = WavPairs(root / "train", train=True, skip_bad=skip_bad, **common)  # type: ignore[arg-type]
        if _pair_files(root / "val")[0]:
            val = WavPairs(root / "val", train=False, skip_bad=skip_bad, **common)  # type: ignore[arg-type]
            return train, val
        if not 0.0 < val_fraction < 1.0 or len(train) < 2:
            raise AudioError(f"{root / 'val'}: no validation pairs, and the {len(train)} training pair(s) "
                             f"cannot be split (val_fraction={val_fraction})")
        n_val = min(len(train) - 1, max(1, int(round(val_fraction * len(train)))))
        warn(f"{root / 'val'}: no validation pairs; holding out the last {n_val} of "
             f"{len(train)} training pairs")
        held = train.pairs[-n_val:]
        train.pairs = train.pairs[:-n_val]
        val = WavPairs(root / "train", train=False, **common,  # type: ignore[arg-type]
                       pairs=[(pid, Path(a.path), Path(b.path)) for pid, a, b in held])
        return train, val
    cat = catalog if catalog is not None else scan_songs(root, segment_seconds=segment_seconds,
                                                         skip_bad=skip_bad)
    train_songs, val_songs = _split_catalog(cat, root, val_fraction, segment_seconds)
    tr_kw: dict[str, Any] = dict(common)
    va_kw: dict[str, Any] = dict(common)
    if style_labels:
        labels = {s.path: _song_style(s, root) for s in cat.songs}
        names = sorted(set(labels.values()))
        tr_kw.update(song_styles=[labels[s.path] for s in train_songs], style_names=names)
        va_kw.update(song_styles=[labels[s.path] for s in val_songs], style_names=names)
    tr = FolderPairs(train_songs, train_pairs, train=True, **tr_kw)
    va = FolderPairs(val_songs, val_pairs, train=False, **va_kw)
    tr.skipped = list(cat.bad)
    va.skipped = list(cat.bad)
    return _with_styles(tr, va, style_labels)


def _with_styles(train: PairDataset, val: PairDataset, style_labels: bool) -> tuple[Dataset, Dataset]:
    return (StyledPairs(train), StyledPairs(val)) if style_labels else (train, val)


# -- building a WAV-pairs folder from songs -----------------------------------------------------

@dataclass
class PairsSummary:
    """What :func:`build_pairs_folder` wrote."""

    out: str
    train_pairs: int
    val_pairs: int
    train_songs: int
    val_songs: int
    skipped: list[tuple[str, str]]


def write_synthetic_songs(out: str | os.PathLike, num_songs: int, *, seconds: float = 30.0, seed: int = 0,
                          sample_rate: int = 24000, stems: bool = True, overwrite: bool = False,
                          by_style: bool = False,
                          progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Write ``num_songs`` synthetic songs to ``out`` as 16-bit WAV (``maskkit data synth``).

    ``OUT/song_0000.wav`` ... (the folder works as a folder of songs); with ``by_style``
    ``OUT/<groove>/song_0000.wav`` instead, one subfolder per drum groove, the layout that
    ``--style-labels`` reads (each song's style is its groove, as for the built-in data). With ``stems``
    ``OUT/stems/song_0000/{drums,bass,chords,melody}.wav`` (the stems folder holds the ignore
    marker, so it is not taken for songs), and ``OUT/songs.json``: each song's seed, tempo, key,
    scale and groove. An ``out`` that already holds songs is refused unless ``overwrite``, which
    first removes them (so ``songs.json`` never lists a set other than the folder's).
    ``progress(row)`` is called with each song's row as it is written. Returns the rows.
    """
    from .synth import GROOVES, STEMS, describe_song, generate_song

    out_p = check_output_dir(out, "OUT")
    # The songs of an earlier call: OUT/song_*.wav, and those its songs.json lists (with
    # --by-style, in groove subfolders); any other audio file is someone's own.
    listed: set[Path] = set()
    try:
        rows = json.loads((out_p / "songs.json").read_text())["songs"]
        listed = {(out_p / r["file"]).resolve() for r in rows if isinstance(r.get("file"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    audio, unsupported, _ = find_audio_files(out_p) if out_p.is_dir() else ([], [], [])
    songs = [*audio, *unsupported]

    def is_ours(f: Path) -> bool:
        top = f.parent == out_p and f.name.startswith("song_") and f.suffix == ".wav"
        return top or f.resolve() in listed

    ours = [*(f for f in songs if is_ours(f)), *out_p.glob("stems/song_*/*.wav"), *out_p.glob("songs.json")]
    others = [f for f in songs if not is_ours(f)]
    if others:  # never mix synthetic songs into a folder of someone's music, --overwrite or not
        raise AudioError(f"{out_p}: holds {len(others)} audio file(s) of its own (e.g. {others[0]}); write "
                         f"the synthetic songs to another folder")
    if songs and not overwrite:
        raise AudioError(f"{out_p}: already holds {len(songs)} synthetic song(s); pass --overwrite "
                         f"(overwrite=True) to replace them, or choose another folder")
    for f in ours:
        f.unlink()
    for d in [*out_p.glob("stems/song_*"), *(out_p / g for g in GROOVES)]:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    out_p.mkdir(parents=True, exist_ok=True)
    seeds = [int(x) for x in np.random.SeedSequence([seed & 0xFFFFFFFF, 0x50]).generate_state(num_songs)]
    digits = max(4, len(str(num_songs - 1)))
    if stems:
        (out_p / "stems").mkdir(exist_ok=True)
        (out_p / "stems" / IGNORE_MARKER).write_text("stems of the songs in the folder above; not songs\n")
    rows = []
    for i, song_seed in enumerate(seeds):
        name = f"song_{i:0{digits}d}"
        mix, parts = generate_song(song_seed, seconds, sample_rate, return_stems=True)
        plan = describe_song(song_seed)
        file = f"{plan.groove}/{name}.wav" if by_style else f"{name}.wav"
        save_audio(out_p / file, mix, sample_rate)
        if stems:
            # a stem can peak above 1 where the mix does not (parts cancel): then the song's stems
            # are float WAVs, which hold it, so that they still sum to the mix (scaled, they did not)
            loud = max(float(np.abs(np.asarray(x)).max(initial=0.0)) for x in parts.values()) > 1.0
            for stem in STEMS:
                save_audio(out_p / "stems" / name / f"{stem}.wav", parts[stem], sample_rate,
                           subtype="FLOAT" if loud else None, limit=not loud)
        row = {"file": file, "seed": song_seed, "seconds": seconds, "sample_rate": sample_rate,
               "bpm": plan.bpm, "key": plan.key, "scale": plan.scale, "groove": plan.groove}
        rows.append(row)
        if progress is not None:
            progress(row)
    (out_p / "songs.json").write_text(json.dumps({"seed": seed, "songs": rows}, indent=1))
    return rows


def build_pairs_folder(src: str | os.PathLike, out: str | os.PathLike, *, segment_seconds: float = 4.0,
                       sample_rate: int = 24000, pairs_per_song: int = 4, val_fraction: float = 0.1,
                       seed: int = 0, skip_bad: bool = False, overwrite: bool = False,
                       progress: Callable[[str], None] | None = None) -> PairsSummary:
    """Write the WAV-pairs layout (``OUT/train``, ``OUT/val``) from a folder of songs.

    Every song is checked in full (decoded to the end). The songs are split by song as in
    :func:`split_songs`; each song is the input of ``pairs_per_song`` pairs whose target is
    another song of the same split. Segments are mono, ``sample_rate``, 16-bit PCM,
    loudness-normalized. ``OUT/pairs.json`` records each pair's source files and offsets.
    An ``OUT`` that already holds pairs is refused unless ``overwrite``.
    """
    if pairs_per_song < 1:
        raise ConfigError(f"pairs_per_song must be >= 1, got {pairs_per_song}")
    src_p, out_p = Path(src).expanduser(), Path(out).expanduser()
    if not src_p.is_dir():
        raise AudioError(f"{src_p}: not a directory")
    check_output_dir(out_p, "OUT")
    try:
        if out_p.resolve() == src_p.resolve() or src_p.resolve() in out_p.resolve().parents:
            raise AudioError(f"{out_p}: the output folder must not be inside the source folder {src_p}")
    except OSError:  # pragma: no cover
        pass
    existing = [p for sub in ("train", "val") for p in (out_p / sub).glob("pair_*.wav")]
    if existing and not overwrite:
        pairs = len({p.name.rsplit("_", 1)[0] + p.parent.name for p in existing})
        raise AudioError(f"{out_p}: already holds {pairs} pair(s) ({len(existing)} files); pass --overwrite "
                         f"(overwrite=True) to replace them")
    cat = scan_songs(src_p, segment_seconds=segment_seconds, skip_bad=skip_bad, full=True, progress=progress)
    train_songs, val_songs = split_songs(cat.songs, src_p, val_fraction)
    for p in existing:
        p.unlink()
    manifest: dict[str, Any] = {"source": str(src_p), "segment_seconds": segment_seconds,
                                "sample_rate": sample_rate, "seed": seed, "pairs_per_song": pairs_per_song,
                                "skipped": [{"path": p, "reason": r} for p, r in cat.bad], "pairs": []}
    counts = {}
    for split, songs in (("train", train_songs), ("val", val_songs)):
        ds = FolderPairs(songs, pairs_per_song * len(songs), sample_rate=sample_rate,
                         segment_seconds=segment_seconds, seed=seed, train=split == "train")
        digits = max(4, len(str(len(ds) - 1)))
        for i in range(len(ds)):
            xa, xb, meta = ds.item_with_sources(i)
            pid = f"{i:0{digits}d}"
            if progress is not None:
                progress(f"{split}/pair_{pid}")
            save_audio(out_p / split / f"pair_{pid}_input.wav", xa, sample_rate)
            save_audio(out_p / split / f"pair_{pid}_output.wav", xb, sample_rate)
            manifest["pairs"].append({"split": split, "id": pid, **meta})
        counts[split] = len(ds)
    tmp = out_p / ".pairs.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out_p / "pairs.json")
    return PairsSummary(out=str(out_p), train_pairs=counts["train"], val_pairs=counts["val"],
                        train_songs=len(train_songs), val_songs=len(val_songs), skipped=list(cat.bad))


# -- checking a folder -------------------------------------------------------------------------

@dataclass
class FileReport:
    """One file of :func:`check_folder`: its header facts and its problem, if any."""

    path: str
    status: str  # "ok" | "bad" | "ignored"
    problem: str = ""
    sample_rate: int | None = None
    channels: int | None = None
    duration: float | None = None
    format: str = ""
    #: Something to know that does not stop training (a pair whose two files differ in length).
    note: str = ""


#: A WAV pair's files may differ in length by this much (seconds, or this share) without a note.
_PAIR_LENGTH_SLACK = (0.5, 0.05)


def _note_pair_lengths(pairs: Sequence[tuple[str, Path, Path | None]], by_path: Mapping[str, FileReport]
                       ) -> None:
    """Note the output file of each pair much longer or shorter than its input: training crops
    both to the shorter one, and a big difference often means two files that do not belong
    together."""
    for _pid, inp, out in pairs:
        if out is None:
            continue
        a, b = by_path.get(os.path.realpath(inp)), by_path.get(os.path.realpath(out))
        if a is None or b is None or a.status != "ok" or b.status != "ok" or not a.duration or not b.duration:
            continue
        diff = abs(a.duration - b.duration)
        if diff > max(_PAIR_LENGTH_SLACK[0], _PAIR_LENGTH_SLACK[1] * max(a.duration, b.duration)):
            b.note = (f"{b.duration:.1f} s against {a.duration:.1f} s for {inp.name}: training uses the "
                      f"first {min(a.duration, b.duration):.1f} s of both (are they a pair?)")


def check_folder(root: str | os.PathLike, *, segment_seconds: float = 4.0, full: bool = True,
                 progress: Callable[[str], None] | None = None) -> tuple[str, list[FileReport]]:
    """``(layout, reports)`` for every file under ``root`` (what ``maskkit data check`` shows).

    ``full`` decodes every file to the end (finds corruption anywhere, measures true
    silence); otherwise a few windows per file are probed. A file shorter than
    ``segment_seconds`` is a problem; so is a pair file without its partner.
    """
    layout = detect_layout(root)
    audio, unsupported, ignored = find_audio_files(root)
    partners: dict[str, str] = {}
    all_pairs: list[tuple[str, Path, Path | None]] = []
    if layout == "pairs":
        for sub in ("train", "val"):
            pairs, orphans = _pair_files(Path(root) / sub)
            all_pairs += pairs
            for pid, inp, outp in pairs:
                if outp is None:
                    partners[os.path.realpath(inp)] = f"no matching pair_{pid}_output.wav"
            for o in orphans:
                partners[os.path.realpath(o)] = "no matching input file"
    slack = 0.05 if layout == "pairs" else 0.0  # what load_segment pads

    def report(path: Path) -> FileReport:
        rep = FileReport(path=str(path), status="ok")
        try:
            head = audio_info(path)
            rep.sample_rate, rep.channels, rep.duration = head.sample_rate, head.channels, head.duration
            rep.format = f"{head.format}/{head.subtype}"
            info = check_audio(path, min_seconds=segment_seconds, slack_seconds=slack, full=full)
            rep.duration = info.duration
        except AudioError as e:
            rep.status, rep.problem = "bad", _reason(e, path)
        if rep.status == "ok" and os.path.realpath(path) in partners:  # (train/ may be a link)
            rep.status, rep.problem = "bad", partners[os.path.realpath(path)]
        return rep

    reports: list[FileReport] = []
    with _pool(len(audio)) as pool:  # a few files at once, as scan_songs
        for i, rep in enumerate(pool.map(report, audio)):
            if progress is not None:
                progress(f"{i + 1}/{len(audio)} {rep.path}")
            reports.append(rep)
    _note_pair_lengths(all_pairs, {os.path.realpath(r.path): r for r in reports})
    for path in unsupported:
        reports.append(FileReport(path=str(path), status="bad",
                                  problem=f"unsupported format '{path.suffix.lower()}'"))
    for path in ignored:
        reports.append(FileReport(path=str(path), status="ignored", problem="not audio"))
    reports.sort(key=lambda r: r.path)
    return layout, reports

