"""The codec plugins: ``stft`` (default) and the optional ``encodec``."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch

import maskkit
from maskkit import ConfigError, PluginError
from maskkit.synth import generate_song


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(autouse=True)
def _isolated_plugins(fresh_plugins):
    """Every test here finds the codecs through a fresh plugin manager (no MASKKIT_* leftovers)."""
    yield fresh_plugins


@pytest.fixture
def stft():
    return maskkit.build_codec("stft")


def test_codecs_are_registered_by_the_plugin(fresh_plugins):
    reg = fresh_plugins.get_manager().codecs()
    assert {"stft", "encodec"} <= set(reg)
    assert reg["stft"].plugin == "codecs" and reg["stft"].dist == "maskkit"


def test_plugin_module_is_light():
    code = ("import sys, maskkit_codecs; "
            "print(int('torch' in sys.modules), int('encodec' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]


def test_stft_defaults_shapes_and_spec(stft):
    spec = stft.spec
    assert stft.sample_rate == 24000
    assert spec.dim == 514 and spec.sample_rate == 24000
    assert spec.frame_rate == pytest.approx(93.75)
    assert len(spec.channel_freqs) == 514
    assert spec.channel_freqs[0] == 0.0 and spec.channel_freqs[256] == 12000.0
    assert spec.channel_freqs[257:] == spec.channel_freqs[:257]  # real parts, then imaginary parts
    x = torch.randn(3, 1, 96000) * 0.1
    enc = stft.encode(x)
    assert enc.shape == (3, 514, stft.num_frames(96000)) == (3, 514, 376)
    assert enc.dtype == torch.float32
    assert stft.decode(enc).shape == (3, 1, 375 * 256)
    assert stft.decode(enc, length=96000).shape == (3, 1, 96000)


@pytest.mark.parametrize("n", [96000, 24001, 1000, 200])
def test_stft_roundtrip_is_exact(stft, n):
    g = torch.Generator().manual_seed(n)
    noise = torch.randn(2, 1, n, generator=g) * 0.2
    music = torch.from_numpy(generate_song(n, n / 24000, 24000)).view(1, 1, n)
    for x in (noise, music, torch.cat([music, music * 1e-3])):  # loud and very quiet
        y = stft.decode(stft.encode(x), length=n)
        assert y.shape == x.shape
        assert _rel_err(y, x) < 1e-4


@pytest.mark.parametrize("opts", [["n_fft=1024", "hop_length=256"],
                                  ["n_fft=256", "hop_length=64", "power=0.3"],
                                  ["power=1.0"], ["n_fft=2048", "hop_length=1024", "sample_rate=44100"]])
def test_stft_roundtrip_other_settings(opts):
    codec = maskkit.build_codec("stft", opts)
    x = torch.randn(2, 1, 30000) * 0.3
    assert _rel_err(codec.decode(codec.encode(x), length=30000), x) < 1e-4
    assert codec.encode(x).shape == (2, codec.spec.dim, codec.num_frames(30000))


def test_stft_power_one_is_the_plain_spectrogram():
    codec = maskkit.build_codec("stft", {"power": 1.0})
    x = torch.randn(1, 1, 4096)
    ref = torch.stft(x[:, 0], 512, 256, window=torch.hann_window(512), normalized=True, return_complex=True)
    enc = codec.encode(x)
    torch.testing.assert_close(enc, torch.cat([ref.real, ref.imag], dim=1))


def test_stft_compression_shrinks_dynamic_range(stft):
    x = torch.from_numpy(generate_song(4, 2.0, 24000)).view(1, 1, -1)
    plain = maskkit.build_codec("stft", {"power": 1.0}).encode(x).abs()
    comp = stft.encode(x).abs()
    q = torch.tensor([0.5, 0.999])
    p_lo, p_hi = torch.quantile(plain.flatten()[::7], q)
    c_lo, c_hi = torch.quantile(comp.flatten()[::7], q)
    assert c_hi / c_lo < 0.6 * (p_hi / p_lo)


def test_stft_channels_map_to_hertz(stft):
    sr = 24000
    t = torch.arange(sr) / sr
    x = (0.5 * torch.sin(2 * math.pi * 3000 * t)).view(1, 1, -1)
    energy = stft.encode(x).pow(2).mean(dim=-1)[0]  # [D]
    peak = int(energy.argmax())
    assert stft.spec.channel_freqs[peak] == pytest.approx(3000, abs=24000 / 512)


def test_stft_gradients_flow_and_are_finite(stft):
    x = (torch.randn(2, 1, 8000) * 0.1).requires_grad_()
    y = stft.decode(stft.encode(x), length=8000)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # Through the encoding (what the model's output goes through), silence included.
    enc = stft.encode(torch.zeros(1, 1, 4000)).requires_grad_()
    out = stft.decode(enc * 2.0 + 0.0, length=4000)
    out.pow(2).sum().backward()
    assert torch.isfinite(enc.grad).all()
    z = torch.zeros(1, 1, 4000, requires_grad=True)
    stft.encode(z).pow(2).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_stft_gradcheck_float64():
    codec = maskkit.build_codec("stft", {"n_fft": 16, "hop_length": 4, "sample_rate": 8000}).double()
    x = torch.randn(1, 1, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: codec.encode(a), (x,))
    e = codec.encode(x.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: codec.decode(a, length=40), (e,))


def test_stft_bad_options_and_inputs(stft):
    with pytest.raises(ConfigError, match="hop_length"):
        maskkit.build_codec("stft", {"n_fft": 256, "hop_length": 200})
    with pytest.raises(ConfigError, match="unknown option 'nfft'"):
        maskkit.build_codec("stft", ["nfft=3"])
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        stft.encode(torch.zeros(2, 8000))
    import numpy as np  # what maskkit.synth.generate_song returns: was "no attribute 'dim'"

    with pytest.raises(ValueError, match=r"expects a torch.Tensor \[B, 1, N\], got ndarray.*from_numpy"):
        stft.encode(np.zeros(8000, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[B, 514, T\]"):
        stft.decode(torch.zeros(1, 100, 10))


def test_stft_follows_device_and_dtype(stft):
    x = torch.randn(1, 1, 2048, dtype=torch.float64)
    y = stft.double().decode(stft.encode(x), length=2048)
    assert y.dtype == torch.float64 and _rel_err(y, x) < 1e-10
    assert "window" not in stft.state_dict()  # no weights to save


# -- encodec -----------------------------------------------------------------------------------

def test_encodec_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "encodec", None)  # import encodec -> ImportError
    with pytest.raises(PluginError, match=r'pip install "maskkit\[encodec\]"'):
        maskkit.build_codec("encodec")


def test_encodec_roundtrip_shapes_random_weights(tmp_path):
    pytest.importorskip("encodec")
    with pytest.warns(UserWarning, match=r"codec 'encodec': no weights given, so the codec is randomly "
                                         r"initialized.*--codec-opt weights=PATH"):
        codec = maskkit.build_codec("encodec")  # one could train on noise for days without being told
    assert codec.sample_rate == 24000
    spec = codec.spec
    assert (spec.dim, spec.frame_rate, spec.channel_freqs) == (128, 75.0, None)
    n = 8000
    x = (torch.randn(2, 1, n) * 0.1).requires_grad_()
    enc = codec.encode(x)
    assert enc.shape == (2, 128, codec.num_frames(n)) == (2, 128, 25)
    y = codec.decode(enc, length=n)
    assert y.shape == (2, 1, n) and torch.isfinite(y).all()
    y.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in codec.parameters())  # frozen
    codec.train()
    assert not codec.model.training

    # Weights come from a local file; loading them reproduces the source model exactly.
    torch.manual_seed(0)
    src = maskkit.build_codec("encodec")
    path = tmp_path / "encodec_24khz.th"
    torch.save(src.model.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real weights: no warning
        loaded = maskkit.build_codec("encodec", {"weights": str(path)})
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), src.encode(x))
    q = maskkit.build_codec("encodec", {"weights": str(path), "bandwidth": 6.0})
    with torch.no_grad():
        assert q.encode(x).shape == (2, 128, 25)


def test_encodec_bad_weights(tmp_path):
    pytest.importorskip("encodec")
    with pytest.raises(ConfigError, match="nowhere.th: no such file"):
        maskkit.build_codec("encodec", {"weights": str(tmp_path / "nowhere.th")})
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="other.pt does not fit"):
        maskkit.build_codec("encodec", {"weights": str(tmp_path / "other.pt")})
    (tmp_path / "junk.th").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="junk.th: cannot be loaded"):
        maskkit.build_codec("encodec", {"weights": str(tmp_path / "junk.th")})
    with pytest.raises(ConfigError, match="bandwidth"):
        maskkit.build_codec("encodec", {"bandwidth": 5.0})
