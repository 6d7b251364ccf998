"""Procedural synthetic music: the built-in training data that needs no download.

:func:`generate_song` renders a short piece with four stems (``drums``, ``bass``, ``chords``,
``melody``) in a random key, scale, tempo and groove, with note envelopes and simple synth
timbres. Everything is drawn from the ``seed``: the same seed gives the same song, bit for
bit, on every machine (NumPy's PCG64 generator, float32 arithmetic).

Speed matters because the trainer renders two songs per training pair on the fly. The
renderer is *template based*: each distinct sound of a song (a kick, a bass note of a given
pitch and length, a chord, ...) is rendered once, vectorized over its samples (wavetable
lookup, closed-form envelopes), then added into the stem at each of its onsets with a slice
add. There is no per-sample Python loop; the only Python loops run over templates and
notes (tens per 4-second clip). A 4 s clip at 24 kHz takes a few milliseconds on one core
(``benchmarks/bench_synth.py`` measures it).

The song is planned section by section (4 bars each) from ``seed`` and the section number,
so a longer render of the same seed begins with the same music as a shorter one (each
stem's level is set from the rendered clip, so levels may differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["STEMS", "SCALES", "SongPlan", "describe_song", "generate_song"]

#: Stem names, in mixing order. ``mix == sum(stems.values())``.
STEMS: tuple[str, ...] = ("drums", "bass", "chords", "melody")

#: Scales as semitone offsets from the key's root.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
}

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Chord progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 3, 0, 4),
    (1, 4, 0, 0), (0, 0, 3, 4), (0, 6, 5, 4), (3, 4, 0, 5), (0, 2, 3, 4),
)

_TIMBRES = ("sine", "triangle", "square", "saw", "organ", "pulse")
_TABLE = 2048  # wavetable length (power of two: the index wraps with a bit mask)
_STEPS_PER_BAR = 16
# attack, decay, sustain, release (seconds / level) of each pitched stem
_ENVELOPES = {"bass": (0.004, 0.25, 0.55, 0.05), "chords": (0.04, 0.6, 0.7, 0.25),
              "melody": (0.01, 0.3, 0.6, 0.12)}
_BARS_PER_SECTION = 4
#: The drum grooves of the synthetic songs: the built-in data's style labels (``--style-labels``).
GROOVES = ("four-on-floor", "backbeat", "halftime", "breakbeat")


@dataclass(frozen=True)
class SongPlan:
    """The song-wide choices drawn from the seed (what ``maskkit data synth`` lists)."""

    seed: int
    bpm: float
    key: str
    root: int  # MIDI note of the bass register root (36..47)
    scale: str
    progression: tuple[int, ...]
    swing: float
    groove: str  # "four-on-floor" | "backbeat" | "halftime" | "breakbeat"
    bass_timbre: str
    chord_timbre: str
    melody_timbre: str
    gains_db: tuple[float, float, float, float]  # drums, bass, chords, melody


def _plan(seed: int) -> SongPlan:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x5EED])
    scale = list(SCALES)[int(rng.integers(len(SCALES)))]
    root = 36 + int(rng.integers(12))
    return SongPlan(
        seed=int(seed),
        bpm=float(rng.integers(80, 161)),
        key=_NOTE_NAMES[root % 12],
        root=root,
        scale=scale,
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        swing=float(rng.choice([0.0, 0.0, 0.08, 0.15])),
        groove=str(rng.choice(list(GROOVES))),
        bass_timbre=str(rng.choice(["saw", "square", "triangle", "pulse"])),
        chord_timbre=str(rng.choice(["saw", "organ", "triangle", "square"])),
        melody_timbre=str(rng.choice(["sine", "triangle", "square", "pulse", "saw"])),
        gains_db=tuple(float(g) for g in rng.uniform(-4.0, 2.0, size=4)),  # type: ignore[arg-type]
    )


def describe_song(seed: int) -> SongPlan:
    """The tempo, key, scale, groove and timbres that :func:`generate_song` uses for ``seed``."""
    return _plan(seed)


# -- sound sources ---------------------------------------------------------------------------

_HARMONIC_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@lru_cache(maxsize=128)
def _wavetable(timbre: str, harmonics: int) -> np.ndarray:
    """One band-limited cycle (``_TABLE`` samples, peak 1) with ``harmonics`` partials."""
    k = np.arange(1, max(1, harmonics) + 1, dtype=np.float64)
    if timbre == "sine":
        amps = (k == 1).astype(np.float64)
    elif timbre == "saw":
        amps = 1.0 / k
    elif timbre == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif timbre == "triangle":
        amps = np.where(k % 2 == 1, 1.0 / k**2, 0.0)
    elif timbre == "pulse":  # 25 % duty cycle
        amps = np.abs(np.sin(np.pi * k * 0.25)) / k
    elif timbre == "organ":  # drawbar-like: fundamental, octave, twelfth, two octaves
        amps = np.zeros_like(k)
        for h, a in ((1, 1.0), (2, 0.6), (3, 0.4), (4, 0.25), (6, 0.1), (8, 0.08)):
            if h <= harmonics:
                amps[h - 1] = a
    else:  # pragma: no cover - internal names only
        raise ValueError(f"unknown timbre {timbre!r}")
    spectrum = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
    spectrum[1: len(amps) + 1] = -1j * amps  # sine phase
    table = np.fft.irfft(spectrum, n=_TABLE)
    table /= max(np.abs(table).max(), 1e-12)
    table = table.astype(np.float32)
    table.setflags(write=False)
    return table


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _tone(freq: float, timbre: str, length: int, sr: int, *, vibrato: float = 0.0) -> np.ndarray:
    """``length`` samples of a periodic tone (wavetable lookup, no partial above 0.45 * sr)."""
    limit = max(1, int(0.45 * sr / max(freq, 1.0)))
    harmonics = max(h for h in _HARMONIC_BUCKETS if h <= limit) if limit >= 1 else 1
    table = _wavetable(timbre, harmonics)
    if vibrato <= 0.0:
        # Integer phase accumulator: 16 fractional bits, the table index is the top bits.
        inc = int(round(freq * _TABLE / sr * 65536.0))
        idx = (np.arange(length, dtype=np.int64) * inc >> 16) & (_TABLE - 1)
        return table[idx]
    t = np.arange(length, dtype=np.float32) / np.float32(sr)
    # 5.5 Hz vibrato of `vibrato` semitones, fading in after 150 ms (closed-form phase).
    depth = freq * (2.0 ** (vibrato / 12.0) - 1.0)
    fv = 5.5
    ramp = np.clip((t - 0.15) / 0.2, 0.0, 1.0)
    cycles = np.float32(freq) * t + (np.float32(depth / (2 * np.pi * fv)) * ramp
                                     * (1.0 - np.cos(np.float32(2 * np.pi * fv) * t)))
    idx = (cycles * np.float32(_TABLE)).astype(np.int64) & (_TABLE - 1)
    return table[idx]


def _adsr(length: int, gate: int, sr: int, attack: float, decay: float, sustain: float,
          release: float) -> np.ndarray:
    """Envelope of ``length`` samples for a note held ``gate`` samples (closed form, by pieces).

    Linear attack to 1, exponential decay towards ``sustain`` while the gate is held, then
    an exponential release from wherever the envelope was when the gate closed.
    """
    env = np.empty(length, np.float32)
    gate = min(gate, length)
    na = min(max(1, int(attack * sr)), gate) if gate > 0 else 0
    inv_sr = np.float32(1.0 / sr)
    env[:na] = np.arange(1, na + 1, dtype=np.float32) / np.float32(max(1, int(attack * sr)))
    if gate > na:
        t = np.arange(gate - na, dtype=np.float32) * inv_sr
        env[na:gate] = sustain + (1.0 - sustain) * np.exp(t * np.float32(-1.0 / max(decay, 1e-3)))
    level = float(env[gate - 1]) if gate > 0 else 0.0
    if length > gate:
        t = np.arange(1, length - gate + 1, dtype=np.float32) * inv_sr
        env[gate:] = np.float32(level) * np.exp(t * np.float32(-1.0 / max(release, 1e-3)))
    return env


def _place(out: np.ndarray, sound: np.ndarray, onset: int, gain: float) -> None:
    """Add ``gain * sound`` into ``out`` at ``onset`` (clipped to the buffer)."""
    n = out.shape[0]
    if onset >= n or gain == 0.0:
        return
    end = min(n, onset + sound.shape[0])
    if onset < 0:
        sound = sound[-onset:]
        onset = 0
    out[onset:end] += np.float32(gain) * sound[: end - onset]


class _Drums:
    """One-shot drum sounds rendered once per song from its own noise."""

    def __init__(self, sr: int, rng: np.random.Generator) -> None:
        n = int(0.45 * sr)
        t = np.arange(n, dtype=np.float32) / np.float32(sr)
        noise = rng.standard_normal(n).astype(np.float32)
        bright = np.empty_like(noise)  # first difference: a crude high-pass for hats
        bright[0] = 0.0
        bright[1:] = noise[1:] - noise[:-1]
        bright *= 0.5
        f_hi, f_lo, tau = rng.uniform(110, 170), rng.uniform(42, 58), rng.uniform(0.025, 0.045)
        phase = f_lo * t + (f_hi - f_lo) * tau * (1.0 - np.exp(-t / tau))
        self.kick = (np.sin(2 * np.pi * phase) * np.exp(-t / rng.uniform(0.18, 0.35))).astype(np.float32)
        self.kick[: int(0.002 * sr)] *= np.linspace(0, 1, int(0.002 * sr), dtype=np.float32)
        body = np.sin(2 * np.pi * rng.uniform(170, 220) * t) * np.exp(-t / 0.06)
        self.snare = (0.55 * body + 0.6 * noise * np.exp(-t / rng.uniform(0.08, 0.16))).astype(np.float32)
        self.snare /= max(float(np.abs(self.snare).max()), 1e-9)
        self.hat = (bright * np.exp(-t / rng.uniform(0.02, 0.04))).astype(np.float32)
        self.open_hat = (bright * np.exp(-t / rng.uniform(0.12, 0.2))).astype(np.float32)


# -- patterns --------------------------------------------------------------------------------

def _drum_pattern(groove: str, rng: np.random.Generator, fill: bool) -> dict[str, np.ndarray]:
    """Velocities (0 = no hit) per 16th step of one bar for kick, snare, hat, open hat."""
    kick = np.zeros(_STEPS_PER_BAR, np.float32)
    snare = np.zeros(_STEPS_PER_BAR, np.float32)
    if groove == "four-on-floor":
        kick[[0, 4, 8, 12]] = 1.0
        snare[[4, 12]] = 0.9
    elif groove == "halftime":
        kick[[0, 10]] = 1.0
        snare[8] = 1.0
    elif groove == "breakbeat":
        kick[[0, 10]] = 1.0
        snare[[4, 12]] = 0.9
        kick[rng.choice([3, 6, 7, 11, 14])] = 0.7
    else:  # backbeat
        kick[[0, 8]] = 1.0
        snare[[4, 12]] = 0.95
        if rng.random() < 0.6:
            kick[rng.choice([6, 7, 10, 11, 14])] = 0.8
    hat_density = rng.choice([2, 2, 1, 4])  # hat every 2nd, 1st or 4th 16th
    hat = np.zeros(_STEPS_PER_BAR, np.float32)
    hat[::hat_density] = 0.5
    hat[::4] = 0.65
    hat *= rng.uniform(0.8, 1.0, _STEPS_PER_BAR).astype(np.float32)
    open_hat = np.zeros(_STEPS_PER_BAR, np.float32)
    if rng.random() < 0.4:
        open_hat[14] = 0.5
        hat[14] = 0.0
    if fill:  # snare roll over the last beat
        snare[12:] = np.linspace(0.5, 1.0, 4, dtype=np.float32)
    return {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat}


def _rhythm(rng: np.random.Generator, density: float) -> list[tuple[int, int]]:
    """A bar of (start step, length in steps) notes; ``density`` in (0, 1] favours short notes."""
    notes: list[tuple[int, int]] = []
    step = 0
    while step < _STEPS_PER_BAR:
        choices = np.array([1, 2, 3, 4, 6, 8])
        weights = np.array([0.3 * density, 0.9 * density + 0.1, 0.15, 0.6 - 0.3 * density, 0.12, 0.18])
        length = int(rng.choice(choices, p=weights / weights.sum()))
        length = min(length, _STEPS_PER_BAR - step)
        if rng.random() > 0.15:  # else a rest
            notes.append((step, length))
        step += length
    return notes


# -- the song ------------------------------------------------------------------------------

def generate_song(seed: int, seconds: float, sample_rate: int = 24000,
                  return_stems: bool = False) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render ``seconds`` of synthetic music for ``seed``: mono float32 ``[N]``, peak <= 0.9.

    ``N = round(seconds * sample_rate)``. With ``return_stems`` it returns ``(mix, stems)``
    where ``stems`` maps ``"drums"``, ``"bass"``, ``"chords"``, ``"melody"`` to float32
    arrays ``[N]`` and ``mix`` equals their sum (up to float rounding). Deterministic:
    the output depends only on the arguments.
    """
    if seconds <= 0:
        raise ValueError(f"generate_song: seconds must be > 0, got {seconds}")
    if sample_rate < 4000:
        raise ValueError(f"generate_song: sample_rate must be >= 4000, got {sample_rate}")
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    plan = _plan(seed)
    scale = SCALES[plan.scale]
    deg_count = len(scale)
    step_s = 60.0 / plan.bpm / 4.0
    step_n = step_s * sr
    bar_n = step_n * _STEPS_PER_BAR
    n_bars = int(math.ceil(n / bar_n)) + 1
    n_sections = int(math.ceil(n_bars / _BARS_PER_SECTION))

    rng_song = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 0xD2])
    drums_src = _Drums(sr, rng_song)
    stems = {name: np.zeros(n + 1, np.float32) for name in STEMS}
    cache: dict[tuple, np.ndarray] = {}

    def pitch(degree: int, octave: int) -> int:
        return plan.root + 12 * (octave + degree // deg_count) + scale[degree % deg_count]

    def onset(bar: int, step: float) -> int:
        s = step + (plan.swing if int(step) % 2 == 1 else 0.0)
        return int(round((bar * _STEPS_PER_BAR + s) * step_n))

    def envelope(kind: str, steps: int) -> np.ndarray:
        key = ("env", kind, steps)
        env = cache.get(key)
        if env is None:
            gate = int(steps * step_n * (0.98 if kind == "chords" else 0.9))
            attack, decay, sustain, release = _ENVELOPES[kind]
            env = _adsr(gate + int(1.2 * release * sr), gate, sr, attack, decay, sustain, release)
            cache[key] = env
        return env

    def note_sound(kind: str, midi: int | tuple[int, ...], steps: int) -> np.ndarray:
        key = (kind, midi, steps)
        snd = cache.get(key)
        if snd is None:
            env = envelope(kind, steps)
            length = env.shape[0]
            if kind == "bass":
                snd = _tone(_midi_hz(midi), plan.bass_timbre, length, sr)  # type: ignore[arg-type]
            elif kind == "chords":
                snd = _tone(_midi_hz(midi[0]), plan.chord_timbre, length, sr)  # type: ignore[index]
                for i, m in enumerate(midi[1:]):  # type: ignore[index]
                    snd += _tone(_midi_hz(m) * (1.0 + 0.0015 * (i + 1)), plan.chord_timbre, length, sr)
                snd *= np.float32(1.0 / len(midi))  # type: ignore[arg-type]
            else:  # melody
                snd = _tone(_midi_hz(midi), plan.melody_timbre, length, sr,  # type: ignore[arg-type]
                            vibrato=0.25 if steps >= 4 else 0.0)
            snd *= env
            cache[key] = snd
        return snd

    for sec in range(n_sections):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, 0x5EC, sec])
        muted = rng.random(4) < 0.12
        if muted.all():
            muted[0] = False
        patterns = [_drum_pattern(plan.groove, rng, fill=False),
                    _drum_pattern(plan.groove, rng, fill=rng.random() < 0.5)]
        bass_rhythm = _rhythm(rng, density=float(rng.uniform(0.3, 0.9)))
        bass_octave_jumps = rng.random(len(bass_rhythm)) < 0.25
        motif = _rhythm(rng, density=float(rng.uniform(0.4, 1.0)))
        walk = np.cumsum(rng.integers(-2, 3, size=len(motif)))
        melody_base = int(rng.integers(0, deg_count))
        chord_hits = [(0, 16)] if rng.random() < 0.6 else [(0, 8), (8, 8)]
        for b in range(_BARS_PER_SECTION):
            bar = sec * _BARS_PER_SECTION + b
            if bar >= n_bars:
                break
            degree = plan.progression[bar % len(plan.progression)] % deg_count
            if not muted[0]:
                pat = patterns[1] if b == _BARS_PER_SECTION - 1 else patterns[0]
                for name, snd in (("kick", drums_src.kick), ("snare", drums_src.snare),
                                  ("hat", drums_src.hat), ("open_hat", drums_src.open_hat)):
                    for st in np.flatnonzero(pat[name]):
                        _place(stems["drums"], snd, onset(bar, int(st)), float(pat[name][st]))
            if not muted[1]:
                for (st, ln), jump in zip(bass_rhythm, bass_octave_jumps, strict=True):
                    midi = pitch(degree, 1 if jump else 0) if st else pitch(degree, 0)
                    if st and rng.random() < 0.2:
                        midi = pitch(degree + 4 * (deg_count == 7) + 3 * (deg_count == 5), 0)
                    _place(stems["bass"], note_sound("bass", midi, ln), onset(bar, st), 0.8)
            if not muted[2]:
                chord = tuple(pitch(degree + o, 2) for o in ((0, 2, 4) if deg_count == 7 else (0, 2, 3)))
                for st, ln in chord_hits:
                    _place(stems["chords"], note_sound("chords", chord, ln), onset(bar, st), 0.7)
            if not muted[3]:
                variation = rng.integers(-1, 2, size=len(motif)) * (rng.random(len(motif)) < 0.3)
                for (st, ln), w, v in zip(motif, walk, variation, strict=True):
                    deg = melody_base + degree + int(w + v)
                    _place(stems["melody"], note_sound("melody", pitch(deg, 3), ln), onset(bar, st),
                           float(rng.uniform(0.55, 0.75)))

    out: dict[str, np.ndarray] = {}
    for name, gain_db in zip(STEMS, plan.gains_db, strict=True):
        x = stems[name][:n]
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if n else 0.0
        gain = (10.0 ** ((-20.0 + gain_db) / 20.0)) / rms if rms > 1e-8 else 0.0
        out[name] = (x * np.float32(gain)).astype(np.float32, copy=False)
    mix = out["drums"] + out["bass"] + out["chords"] + out["melody"]
    peak = float(np.abs(mix).max()) if n else 0.0
    if peak > 0.0:
        scale_ = np.float32(0.9 / peak)
        mix *= scale_
        for name in STEMS:
            out[name] *= scale_
    if return_stems:
        return mix, out
    return mix
