"""Tests of the hpss plugin: maskkit's conformance kit, then what the strategy is for."""

from __future__ import annotations

import importlib.metadata as md
import math

import pytest
import torch
from maskkit import ConfigError, EncodingSpec
from maskkit.testing import StrategyCase, parametrize_strategy_checks

from maskkit_hpss.strategy import HPSS, median_filter

SR = 8000
N_FFT = 256
HOP = 64


def stft_spec(n_fft: int = N_FFT, sample_rate: int = SR) -> EncodingSpec:
    """The layout of an STFT codec: real parts of every bin, then imaginary parts."""
    bins = n_fft // 2 + 1
    freqs = tuple(k * sample_rate / n_fft for k in range(bins))
    return EncodingSpec(dim=2 * bins, frame_rate=sample_rate / HOP, sample_rate=sample_rate,
                        channel_freqs=freqs + freqs)


def encode(audio: torch.Tensor, n_fft: int = N_FFT) -> torch.Tensor:
    """``[B, N]`` audio -> ``[B, 2F, T]`` (power-compressed complex STFT as real/imag channels)."""
    X = torch.stft(audio, n_fft, HOP, window=torch.hann_window(n_fft), return_complex=True)
    X = X * X.abs().clamp_min(1e-12) ** (0.3 - 1.0)  # |X|^0.3 with the phase kept
    return torch.cat([X.real, X.imag], dim=1)


SMALL = stft_spec(n_fft=14, sample_rate=SR)  # D = 16: fast conformance runs


@parametrize_strategy_checks([
    StrategyCase(HPSS, spec=SMALL, id="hpss"),
    StrategyCase(HPSS, spec=SMALL, options={"time_kernel": 3, "freq_kernel": 5, "margin": 2.0},
                 id="hpss-margin2"),
])
def test_conformance(strategy_check):
    strategy_check()


def test_refuses_a_codec_without_channel_frequencies():
    with pytest.raises(ConfigError, match=r"strategy 'hpss'.*channel frequencies.*'stft'"):
        HPSS(spec=EncodingSpec(dim=16))


def test_refuses_an_input_of_another_width():
    s = HPSS(spec=SMALL)
    x = torch.randn(1, SMALL.dim + 2, 8)
    with pytest.raises(ConfigError, match="D=18"):
        s(x, x)


def test_even_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="time_kernel.*odd"):
        HPSS(["time_kernel=4"], spec=SMALL)


def test_median_filter_matches_a_direct_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, generator=g, dtype=torch.float64)
    for dim in (1, 2):
        for k in (1, 3, 5, 11):
            got = median_filter(x, k, dim)
            n, h = x.shape[dim], k // 2
            want = torch.empty_like(x)
            for i in range(n):
                idx = torch.tensor([min(max(j, 0), n - 1) for j in range(i - h, i + h + 1)])
                want.select(dim, i).copy_(x.index_select(dim, idx).median(dim=dim).values)
            assert torch.equal(got, want), (dim, k)


def drums_and_tone(n: int = SR, sr: int = SR) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """A steady 1 kHz tone, and clicks (single-sample impulses) every 1/8 s, at rate ``sr``."""
    t = torch.arange(n, dtype=torch.float32) / sr
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    clicks = torch.zeros(n)
    at = list(range(sr // 16, n - sr // 16, sr // 8))
    clicks[at] = 1.0
    return tone, clicks, at


def quiet_frames(num_frames: int, click_frames: list[int]) -> list[int]:
    return [f for f in range(num_frames) if min(abs(f - c) for c in click_frames) > 3]


def test_keeps_the_drums_of_the_input_and_the_harmony_of_the_target():
    tone, clicks, at = drums_and_tone()
    x = encode((tone + clicks).unsqueeze(0))
    spec = stft_spec()
    s = HPSS(spec=spec).eval()
    masks = s(x, x)
    F = N_FFT // 2 + 1
    tone_bin = round(1000.0 * N_FFT / SR)
    click_frames = sorted({round(a / HOP) for a in at})
    quiet = quiet_frames(x.shape[-1], click_frames)
    perc, harm = masks.input_mask[0, :F], masks.target_mask[0, :F]  # real channels: one per bin
    # away from the tone, the clicks are percussive: the input keeps them, the target drops them
    far = [b for b in range(F) if abs(b - tone_bin) > 4]
    assert perc[far][:, click_frames].mean() > 0.9
    assert harm[far][:, click_frames].mean() < 0.1
    # the tone, between clicks, is harmonic: the target keeps it, the input drops it
    assert harm[tone_bin, quiet].mean() > 0.9
    assert perc[tone_bin, quiet].mean() < 0.1
    # real and imaginary channels of a bin get the same mask
    assert torch.equal(masks.input_mask[:, :F], masks.input_mask[:, F:])
    # masked and decoded, the input's part is mostly clicks and the target's mostly tone
    hard = s(x, x, hard=True)
    assert hard.input_mask[0, :F][far][:, click_frames].float().mean() > 0.9
    assert hard.target_mask[0, tone_bin, quiet].float().mean() > 0.9


def test_works_with_the_stft_codec_when_installed():
    import maskkit

    if "stft" not in maskkit.codec_names():
        pytest.skip("the 'stft' codec is not installed")
    codec = maskkit.build_codec("stft")
    sr, spec = codec.sample_rate, codec.spec
    tone, clicks, at = drums_and_tone(sr, sr)
    enc = codec.encode((tone + clicks).view(1, 1, -1))
    masks = HPSS(spec=spec)(enc, enc)
    assert masks.input_mask.shape == enc.shape
    # the same separation as with the hand-made STFT above, through the codec's own layout
    hop = sr / spec.frame_rate
    clicks_at = sorted({round(a / hop) for a in at})
    quiet = quiet_frames(enc.shape[-1], clicks_at)
    freqs = torch.tensor(spec.channel_freqs)
    tone_channels = (freqs - 1000.0).abs() == (freqs - 1000.0).abs().min()  # re and im of one bin
    far_channels = (freqs - 1000.0).abs() > 500.0
    assert int(tone_channels.sum()) == 2
    assert float(masks.target_mask[0][tone_channels][:, quiet].mean()) > 0.9  # the tone: harmonic
    assert float(masks.input_mask[0][tone_channels][:, quiet].mean()) < 0.1
    assert float(masks.input_mask[0][far_channels][:, clicks_at].mean()) > 0.9  # the clicks: percussive
    assert float(masks.target_mask[0][far_channels][:, clicks_at].mean()) < 0.1


def test_registered_through_the_entry_point_when_installed():
    try:
        md.distribution("maskkit-hpss")
    except md.PackageNotFoundError:
        pytest.skip("maskkit-hpss is not installed (pip install .)")
    import maskkit

    entry = maskkit.get_manager().strategies()["hpss"]
    assert entry.dist == "maskkit-hpss"
    assert entry.cls.__module__ == "maskkit_hpss.strategy"
