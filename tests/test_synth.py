"""The procedural synthetic music generator (maskkit.synth)."""

from __future__ import annotations

import numpy as np
import pytest

from maskkit.synth import SCALES, STEMS, describe_song, generate_song


def _band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1.0 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum() / max(spec.sum(), 1e-20))


@pytest.mark.parametrize("sr,seconds", [(24000, 4.0), (16000, 2.5), (44100, 1.0)])
def test_shape_dtype_range(sr, seconds):
    x = generate_song(3, seconds, sr)
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float32
    assert x.shape == (round(seconds * sr),)
    assert np.isfinite(x).all()
    assert 0.5 < np.abs(x).max() <= 0.9 + 1e-6


def test_same_seed_same_song_other_seed_other_song():
    a = generate_song(11, 3.0, 24000)
    b = generate_song(11, 3.0, 24000)
    c = generate_song(12, 3.0, 24000)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_stems_sum_to_mix_and_are_distinct():
    mix, stems = generate_song(5, 4.0, 24000, return_stems=True)
    assert tuple(stems) == STEMS
    total = sum(stems.values())
    np.testing.assert_allclose(mix, total, atol=1e-5)
    for name, s in stems.items():
        assert s.shape == mix.shape and s.dtype == np.float32, name
    # The stems are different instruments, not copies of one signal.
    loud = [s for s in stems.values() if np.abs(s).max() > 0]
    for i in range(len(loud)):
        for j in range(i + 1, len(loud)):
            r = np.corrcoef(loud[i], loud[j])[0, 1]
            assert abs(r) < 0.9


def test_instruments_sit_in_their_registers():
    # Over many seeds: bass energy is low, hats/melody reach higher; every stem is used.
    sr = 24000
    low_bass, high_melody, used = [], [], {s: 0 for s in STEMS}
    for seed in range(12):
        _, stems = generate_song(seed, 4.0, sr, return_stems=True)
        for name, s in stems.items():
            used[name] += int(np.abs(s).max() > 0)
        if np.abs(stems["bass"]).max() > 0:
            low_bass.append(_band_energy(stems["bass"], sr, 0, 400))
        if np.abs(stems["melody"]).max() > 0:
            high_melody.append(_band_energy(stems["melody"], sr, 400, 12000))
    assert all(v >= 8 for v in used.values()), used
    assert np.median(low_bass) > 0.6
    assert np.median(high_melody) > 0.6


def test_plans_vary_keys_scales_tempos():
    plans = [describe_song(s) for s in range(60)]
    assert len({p.key for p in plans}) >= 8
    assert len({p.scale for p in plans}) >= 5
    assert {p.scale for p in plans} <= set(SCALES)
    bpms = [p.bpm for p in plans]
    assert min(bpms) >= 80 and max(bpms) <= 160 and len(set(bpms)) >= 20
    assert describe_song(7) == describe_song(7)


def test_longer_render_starts_with_the_same_music():
    short = generate_song(21, 3.0, 24000)
    long = generate_song(21, 9.0, 24000)[: short.shape[0]]
    assert np.corrcoef(short, long)[0, 1] > 0.99


def test_no_aliasing_above_nyquist_band():
    # Wavetables are band-limited: almost no energy in the top of the band.
    x = generate_song(2, 4.0, 16000)
    assert _band_energy(x, 16000, 7600, 8000) < 1e-3


@pytest.mark.parametrize("kwargs", [{"seconds": 0.0}, {"seconds": -1.0}, {"sample_rate": 100}])
def test_bad_arguments(kwargs):
    args = {"seed": 0, "seconds": 1.0, "sample_rate": 24000, **kwargs}
    with pytest.raises(ValueError):
        generate_song(**args)
