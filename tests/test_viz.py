"""``maskkit masks``: the mask/attention picture (headless, fixed pixel size)."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from maskkit import Masks, MaskStrategy, metrics
from maskkit.errors import AudioError, ConfigError, MaskkitError
from maskkit.plugins import build_codec, build_strategy
from maskkit.synth import generate_song
from maskkit.viz import plot_masks
from maskkit_cli.main import cli

SR = 24000


def png_header(path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature and IHDR chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + 13]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return struct.unpack(">II", body[:8])


@pytest.fixture
def songs(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.ogg"
    sf.write(a, np.stack([generate_song(1, 2.0, 44100), generate_song(2, 2.0, 44100)], axis=1), 44100)
    sf.write(b, generate_song(3, 1.5, 16000), 16000)
    return a, b


class Attending(MaskStrategy):
    """A toy strategy with attention maps, exposed through the generic ``attention_maps``."""

    name = "toy-attending"

    def forward(self, x_input, x_target, *, hard=False):
        m = torch.sigmoid(x_input.mean(dim=1, keepdim=True) - x_target.mean(dim=1, keepdim=True))
        return Masks(m, 1 - m)

    def attention_maps(self, x_input, x_target):
        T = x_input.shape[-1]
        a = torch.softmax(torch.randn(x_input.shape[0], 2, T, T, generator=torch.Generator().manual_seed(0)),
                          dim=-1)
        return {"input -> target": a, "target -> input": a.mean(dim=1)}


class ExtrasAttention(Attending):
    name = "toy-extras"

    def forward(self, x_input, x_target, *, hard=False):
        masks = super().forward(x_input, x_target, hard=hard)
        T = x_input.shape[-1]
        masks.extras["attention"] = torch.full((x_input.shape[0], T, T), 1.0 / T)
        return masks

    attention_maps = None  # type: ignore[assignment]


def test_picture_is_a_png_of_the_asked_size_with_the_metrics(songs, tmp_path):
    a, b = songs
    out = tmp_path / "pics" / "temporal.png"
    pic = plot_masks("temporal", a, b, out, strategy_options={"segment": 40}, seconds=1.0)
    assert png_header(out) == (1400, 1000) == (pic.width, pic.height)
    assert pic.strategy == "temporal" and pic.attention == []
    assert pic.metrics["coverage"] == pytest.approx(1.0, abs=1e-6)
    # the title's metrics are mask_metrics of the strategy's masks for these encodings
    from maskkit.audio import load_audio

    codec = build_codec("stft")
    xi, xt = load_audio(a, SR, duration_seconds=1.0), load_audio(b, SR, duration_seconds=1.0)
    ei, et = codec.encode(xi.unsqueeze(0)), codec.encode(xt.unsqueeze(0))
    m = build_strategy("temporal", {"segment": 40}, spec=codec.spec)(ei, et)
    pair = {k: v for k, v in metrics.mask_metrics(m.input_mask, m.target_mask).items()
            if k not in metrics.BATCH_METRICS}  # one pair: no adaptivity (it read 0 for every strategy)
    assert pic.metrics == pytest.approx(pair) and "adaptivity" not in pic.metrics


@pytest.mark.parametrize("size", [(640, 480), (900, 1200)])
def test_picture_size_is_fixed_by_the_size_argument(songs, tmp_path, size):
    a, b = songs
    out = tmp_path / "f.png"
    plot_masks("frequency", a, b, out, size=size, seconds=0.5)
    assert png_header(out) == size


def test_attention_maps_are_drawn_when_the_strategy_offers_them(songs, tmp_path):
    a, b = songs
    codec = build_codec("stft")
    pic = plot_masks(Attending(spec=codec.spec), a, b, tmp_path / "att.png", seconds=0.5)
    assert pic.attention == ["input -> target", "target -> input"]
    assert png_header(tmp_path / "att.png") == (1400, 1000)
    pic = plot_masks(ExtrasAttention(spec=codec.spec), a, b, tmp_path / "ext.png", seconds=0.5)
    assert pic.attention == ["attention"]


@pytest.mark.filterwarnings("ignore:masks. strategy .creative-agent. is learnable")  # untrained on purpose
def test_creative_agent_attention_maps_are_drawn(songs, tmp_path):
    """The built-in learned strategy offers its cross-attention through the generic method."""
    from maskkit.plugins import strategy_names

    if "creative-agent" not in strategy_names():
        pytest.skip("the creative-agent plugin is not installed")
    a, b = songs
    pic = plot_masks("creative-agent", a, b, tmp_path / "agent.png", seconds=0.5)
    assert len(pic.attention) == 2
    assert png_header(tmp_path / "agent.png") == (1400, 1000)


def test_tensors_offset_and_hard_masks(tmp_path):
    x = torch.from_numpy(generate_song(4, 3.0, SR))
    y = torch.from_numpy(generate_song(5, 3.0, SR))
    pic = plot_masks("energy", x, y, tmp_path / "e.png", offset_seconds=1.0, seconds=1.0, hard=True)
    assert pic.metrics["complementarity"] == pytest.approx(100.0)  # hard complementary masks never overlap
    assert png_header(tmp_path / "e.png") == (1400, 1000)


def test_short_songs_and_silence_are_drawn_with_a_warning(songs, tmp_path):
    a, b = songs  # b.ogg is 1.5 s long
    with pytest.warns(UserWarning, match=r"masks: drawing 1\.50 s, not the 4 s asked"):
        pic = plot_masks("temporal", a, b, tmp_path / "short.png", seconds=4.0)
    assert pic.seconds == pytest.approx(1.5, abs=0.01)
    quiet = torch.zeros(SR)
    with pytest.warns(UserWarning, match="masks: the target from 0 s for 1.00 s is silent"):
        plot_masks("temporal", torch.from_numpy(generate_song(4, 1.0, SR)), quiet, tmp_path / "q.png",
                   seconds=1.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full stretch of two songs with sound: no warning
        assert plot_masks("temporal", a, b, tmp_path / "ok.png", seconds=1.0).seconds == pytest.approx(1.0)


def test_checkpoint_strategy_and_window(songs, tmp_path):
    from test_arrange import make_checkpoint

    a, b = songs
    ck = make_checkpoint(tmp_path / "ck.pt", strategy="temporal", segment_seconds=0.5)
    pic = plot_masks(str(ck), a, b, tmp_path / "ck.png")
    assert pic.strategy == "temporal"
    assert png_header(tmp_path / "ck.png") == (1400, 1000)


def test_errors_name_what_is_wrong(songs, tmp_path):
    a, b = songs
    with pytest.raises(AudioError, match="gone.wav"):
        plot_masks("temporal", tmp_path / "gone.wav", b, tmp_path / "x.png")
    with pytest.raises(ConfigError, match=".png"):
        plot_masks("temporal", a, b, tmp_path / "x.jpg")
    with pytest.raises(MaskkitError, match="unknown strategy 'nope'"):
        plot_masks("nope", a, b, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_says_how_to_install_it(songs, tmp_path, monkeypatch):
    a, b = songs
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MaskkitError, match=r'pip install "maskkit\[plots\]"'):
        plot_masks("temporal", a, b, tmp_path / "x.png")


def test_headless_agg_backend(songs, tmp_path):
    a, b = songs
    plot_masks("temporal", a, b, tmp_path / "x.png", seconds=0.5)
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"


def test_cli_masks(songs, tmp_path):
    a, b = songs
    out = tmp_path / "cli.png"
    r = CliRunner().invoke(cli, ["masks", "hybrid", str(a), str(b), "--png", str(out), "--seconds", "1",
                                 "--size", "800x600"])
    assert r.exit_code == 0, r.output
    assert "complementarity" in r.output and png_header(out) == (800, 600)
    assert "1.00 s from 0 s" in r.output
    r = CliRunner().invoke(cli, ["masks", "temporal", str(a), str(tmp_path / "nothere.flac"), "--png",
                                 str(tmp_path / "n.png")])
    assert r.exit_code == 2 and "nothere.flac" in r.output
