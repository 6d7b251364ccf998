"""Interpretability snapshots written during validation (maskkit.snapshots)."""

from __future__ import annotations

import json
import struct
import sys
import zlib

import pytest
import torch

from maskkit import Masks, MaskStrategy, metrics
from maskkit.model import ModelConfig, SimpleTransformer
from maskkit.plugins import build_codec, build_strategy
from maskkit.snapshots import MAX_CURVE_POINTS, Snapshot, save_validation_snapshot
from maskkit.synth import generate_song

SR = 24000
SMALL = ModelConfig(d_model=16, nhead=2, num_layers=1, num_transformer_layers=1, dim_feedforward=32)


def png_size(path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, IHDR CRC and IEND chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", body[:8])


@pytest.fixture(scope="module")
def codec():
    return build_codec("stft", {})


def make_model(codec, name="creative-agent", options=None):
    if options is None and name == "creative-agent":
        options = {"hidden_dim": 16, "num_heads": 2}
    torch.manual_seed(0)
    strategy = build_strategy(name, options or {}, spec=codec.spec)
    return SimpleTransformer(SMALL, strategy, codec.spec.dim)


def audio_batch(seeds, seconds=0.5) -> torch.Tensor:
    return torch.stack([torch.from_numpy(generate_song(s, seconds, SR)) for s in seeds]).unsqueeze(1)


@pytest.fixture(scope="module")
def batch():
    return audio_batch(range(1, 6)), audio_batch(range(11, 16))


def pair_masks(model, codec, x_in, x_tg, k, **kw):
    """The masks of the first ``k`` pairs, as [k, D, T] float tensors (computed directly)."""
    with torch.no_grad():
        e_in, e_tg = codec.encode(x_in[:k]), codec.encode(x_tg[:k])
        was = model.training
        model.eval()
        m = model.masks(e_in, e_tg, **kw)
        model.train(was)
    shape = e_in.shape
    return m.input_mask.float().expand(shape), m.target_mask.float().expand(shape)


def test_writes_json_and_png_with_the_epoch_in_their_names(codec, batch, tmp_path):
    model = make_model(codec)
    out = tmp_path / "runs" / "snaps"  # created on demand
    snap = save_validation_snapshot(model, codec, *batch, out, 7, max_pairs=3)
    assert isinstance(snap, Snapshot)
    assert snap.json == out / "epoch_0007.json" and snap.png == out / "epoch_0007.png"
    assert snap.pairs == 3 and len(snap.metrics) == 3
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0007.json", "epoch_0007.png"]  # no temp files
    assert png_size(snap.png) == (1200, 300 * 3)
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib import image

    assert image.imread(snap.png).shape[:2] == (900, 1200)
    assert matplotlib.get_backend().lower() == "agg"

    rec = json.loads(snap.json.read_text())
    assert rec["epoch"] == 7 and rec["strategy"] == "creative-agent" and rec["pairs"] == 3
    assert rec["attention"] == ["input_to_target", "target_to_input"]
    assert len(rec["per_pair"]) == 3


def test_per_pair_metrics_are_mask_metrics_of_that_pair(codec, batch, tmp_path):
    model = make_model(codec)
    snap = save_validation_snapshot(model, codec, *batch, tmp_path, 1, max_pairs=4)
    rec = json.loads(snap.json.read_text())
    im, tm = pair_masks(model, codec, *batch, 4)
    for i in range(4):
        expected = {k: v for k, v in metrics.mask_metrics(im[i:i + 1], tm[i:i + 1]).items()
                    if k not in metrics.BATCH_METRICS}  # (adaptivity: across pairs, in batch_metrics)
        assert set(rec["per_pair"][i]["metrics"]) == set(metrics.METRICS) - metrics.BATCH_METRICS
        assert rec["per_pair"][i]["metrics"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert snap.metrics[i] == pytest.approx(expected, rel=1e-5, abs=1e-7)
        # the curves: share kept per frame, mean over channels
        assert rec["per_pair"][i]["input_kept"] == pytest.approx(im[i].mean(dim=0).tolist(), abs=1e-6)
        assert rec["per_pair"][i]["target_kept"] == pytest.approx(tm[i].mean(dim=0).tolist(), abs=1e-6)
    assert rec["batch_metrics"] == pytest.approx(metrics.mask_metrics(im, tm), rel=1e-5, abs=1e-7)


def test_max_pairs_is_respected_and_a_small_batch_is_fine(codec, batch, tmp_path):
    model = make_model(codec, "temporal")
    snap = save_validation_snapshot(model, codec, *batch, tmp_path, 2, max_pairs=2)
    assert snap.pairs == 2 and len(json.loads(snap.json.read_text())["per_pair"]) == 2
    assert png_size(snap.png) == (1200, 600)
    x_in, x_tg = batch
    snap = save_validation_snapshot(model, codec, x_in[:1], x_tg[:1], tmp_path, 3, max_pairs=4)
    assert snap.pairs == 1 and png_size(snap.png) == (1200, 300)
    with pytest.raises(ValueError, match="max_pairs"):
        save_validation_snapshot(model, codec, *batch, tmp_path, 4, max_pairs=0)


def test_strategy_without_attention_and_long_curves_downsampled(codec, tmp_path):
    model = make_model(codec, "temporal")
    assert not hasattr(model.strategy, "attention_maps")
    x_in, x_tg = audio_batch([1, 2], seconds=1.0), audio_batch([3, 4], seconds=1.0)
    snap = save_validation_snapshot(model, codec, x_in, x_tg, tmp_path, 12,
                                    strategy_kwargs={"hard": True})
    rec = json.loads(snap.json.read_text())
    assert rec["strategy"] == "temporal" and rec["attention"] == []
    assert rec["frames"] > MAX_CURVE_POINTS
    im, tm = pair_masks(model, codec, x_in, x_tg, 2, hard=True)
    for i, pair in enumerate(rec["per_pair"]):
        assert len(pair["input_kept"]) == len(pair["target_kept"]) == MAX_CURVE_POINTS
        # averaged down over nearly equal runs of frames: the mean is about the same
        assert sum(pair["input_kept"]) / MAX_CURVE_POINTS == pytest.approx(float(im[i].mean()), abs=0.03)
        one = metrics.mask_metrics(im[i:i + 1], tm[i:i + 1])
        one = {k: v for k, v in one.items() if k not in metrics.BATCH_METRICS}
        assert pair["metrics"] == pytest.approx(one, abs=1e-6)
    assert png_size(snap.png) == (1200, 600)


class Noisy(MaskStrategy):
    """Draws from the global RNG on every call, with dropout: the snapshot must not disturb it."""

    name = "toy-noisy"

    def __init__(self, config=None, *, spec=None):
        super().__init__(config, spec=spec)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x_input, x_target, *, hard=False):
        m = self.drop(torch.rand(1, 1, x_input.shape[-1]))
        m = m.clamp(0, 1)
        return Masks(m, 1 - m, extras={"attention": torch.softmax(torch.randn(x_input.shape[0], 3, 3), -1)})


@pytest.mark.parametrize("training", [True, False])
def test_rng_state_and_training_flag_are_restored(codec, batch, tmp_path, training):
    for model in (make_model(codec), SimpleTransformer(SMALL, Noisy(spec=codec.spec), codec.spec.dim)):
        model.train(training)
        torch.manual_seed(123)
        before = torch.get_rng_state()
        snap = save_validation_snapshot(model, codec, *batch, tmp_path, 5, max_pairs=2)
        assert torch.equal(torch.get_rng_state(), before)
        assert model.training is training
        assert all(m.training is training for m in model.modules())
        assert snap.png is not None
    # extras["attention"] is drawn when the strategy has no attention_maps method
    assert json.loads(snap.json.read_text())["attention"] == ["attention"]


def test_without_matplotlib_only_the_json_is_written(codec, batch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    model = make_model(codec, "temporal")
    snap = save_validation_snapshot(model, codec, *batch, tmp_path, 9, max_pairs=2)
    assert snap.png is None and snap.pairs == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0009.json"]
    assert len(json.loads(snap.json.read_text())["per_pair"]) == 2


def test_rewriting_an_epoch_replaces_the_files(codec, batch, tmp_path):
    model = make_model(codec, "temporal")
    first = save_validation_snapshot(model, codec, *batch, tmp_path, 0, max_pairs=1)
    second = save_validation_snapshot(model, codec, *batch, tmp_path, 0, max_pairs=3)
    assert first.json == second.json
    assert json.loads(second.json.read_text())["pairs"] == 3
    assert png_size(second.png) == (1200, 900)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0000.json", "epoch_0000.png"]


# -- wired into the trainer ---------------------------------------------------------------------------
def test_trainer_saves_snapshots_every_n_epochs_without_changing_the_run(tmp_path):
    pytest.importorskip("maskkit_creative_agent")
    from test_train import tiny

    from maskkit.train import train

    agent = ("--strategy", "creative-agent", "--strategy-opt", "hidden_dim=8",
             "--strategy-opt", "num_heads=2")
    args = ("--train-pairs", "4", "--batch-size", "4", "--epochs", "3")
    with_snaps = train(tiny(tmp_path / "a", *args, "--snapshot-every", "2", strategy=agent))
    without = train(tiny(tmp_path / "b", *args, strategy=agent))
    snaps = tmp_path / "a" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["epoch_0002.json", "epoch_0002.png"]
    data = json.loads((snaps / "epoch_0002.json").read_text())
    assert data["epoch"] == 2 and data["strategy"] == "creative-agent" and len(data["per_pair"]) == 4
    assert not (tmp_path / "b" / "snapshots").exists()
    # Snapshots draw no random numbers: the two runs are the same run.
    assert [h["val_loss"] for h in with_snaps.history] == [h["val_loss"] for h in without.history]
