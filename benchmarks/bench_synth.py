"""Synthetic music speed: songs generated per second, and whether on-the-fly pairs keep up
with training.

    python benchmarks/bench_synth.py                  # the default (small) training preset
    python benchmarks/bench_synth.py --preset base    # 4 s segments, the base model
    python benchmarks/bench_synth.py --device cuda --workers 0,4,8   # GPU step; DataLoader workers
    python benchmarks/bench_synth.py --json out.json

Measured side by side in one process (the claim is the ratio, not the absolute times):
- song: ``generate_song`` of a 4 s clip at 24 kHz (ms, songs per second) and of a 3-minute song
  (times faster than real time); numpy, one core;
- pairs: ``SyntheticPairs`` items per second at the preset's segment length (two songs rendered
  and loudness-normalized per item), in this process (``num_workers=0``);
- step: one training step of the preset's default model (stft codec, the preset's strategy,
  batch size, CombinedLoss, AdamW): encode both songs, model, decode, loss, backward, update;
  training pairs per second = batch size / step time;
- ratio: data pairs/s over training pairs/s. Above 1, one core generating data keeps up with
  training; the trainer's DataLoader workers (``data.num_workers``) multiply the data side;
- workers (``--workers``): pairs per second through a ``DataLoader`` with that many workers
  (batches of the preset's size), to size ``data.num_workers`` when the step is fast (GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_fn  # noqa: E402

import maskkit  # noqa: E402
from maskkit.data import SyntheticPairs  # noqa: E402
from maskkit.loss import CombinedLoss  # noqa: E402
from maskkit.model import build_model  # noqa: E402
from maskkit.synth import generate_song  # noqa: E402


def _train_config(preset: str):  # type: ignore[no-untyped-def]
    from maskkit.train import TrainConfig

    return TrainConfig.from_preset(preset)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=["small", "base", "large"])
    p.add_argument("--strategy", default=None, help="default: the preset's (falls back to 'temporal')")
    p.add_argument("--songs", type=int, default=60, help="songs rendered for the song rate")
    p.add_argument("--pairs", type=int, default=40, help="items read for the pair rate")
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", default="", help="comma-separated DataLoader worker counts to time")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    dev = torch.device(a.device)

    cfg = _train_config(a.preset)
    sr, seg, batch = 24000, float(cfg.data.segment_seconds), int(cfg.batch_size)
    strategy = a.strategy or cfg.strategy
    note = ""
    if strategy not in maskkit.strategy_names():
        note = f"strategy '{strategy}' is not installed; timed 'temporal' instead"
        strategy = "temporal"

    # -- songs ------------------------------------------------------------------------------
    for s in range(5):
        generate_song(10_000 + s, 4.0, sr)
    t0 = time.perf_counter()
    for s in range(a.songs):
        generate_song(s, 4.0, sr)
    song_s = (time.perf_counter() - t0) / a.songs
    t0 = time.perf_counter()
    generate_song(1, 180.0, sr)
    long_s = time.perf_counter() - t0

    # -- pairs ------------------------------------------------------------------------------
    ds = SyntheticPairs(a.pairs, seconds=seg, sample_rate=sr, seed=0)
    ds[0]
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    pair_s = (time.perf_counter() - t0) / len(ds)

    # -- one training step of the preset's model --------------------------------------------
    codec = maskkit.build_codec(cfg.codec, cfg.codec_options or None).to(dev)
    model = build_model(cfg.model, strategy, spec=codec.spec).to(dev)
    loss_fn = CombinedLoss(cfg.loss).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    items = [ds[i % len(ds)] for i in range(batch)]
    xi = torch.stack([x for x, _ in items]).to(dev)
    xt = torch.stack([y for _, y in items]).to(dev)
    n = xi.shape[-1]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            ei, et = codec.encode(xi), codec.encode(xt)
        out, reg, masks = model(ei, et, return_masks=True)
        audio = codec.decode(out, length=n)
        loss, _ = loss_fn(audio, xi, xt, reg, masks.extras.get("balance_loss"))
        loss.backward()
        opt.step()

    step_s = time_fn(step, dev, warmup=2, repeats=a.steps)["median_s"]
    train_pairs_s = batch / step_s
    data_pairs_s = 1.0 / pair_s
    loader_rates = {}
    for w in [int(v) for v in a.workers.split(",") if v.strip()]:
        big = SyntheticPairs(max(a.pairs, batch * max(1, w) * 4), seconds=seg, sample_rate=sr, seed=1)
        loader = DataLoader(big, batch_size=batch, num_workers=w)
        t0 = time.perf_counter()
        count = sum(x.shape[0] for x, _ in loader)  # worker start-up included
        loader_rates[f"loader_pairs_per_s_workers_{w}"] = round(count / (time.perf_counter() - t0), 1)

    res = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "preset": a.preset,
        "segment_seconds": seg, "batch_size": batch, "strategy": strategy,
        "model_parameters": model.num_parameters(),
        "song_4s_ms": round(song_s * 1e3, 2), "songs_per_s": round(1.0 / song_s, 1),
        "song_180s_s": round(long_s, 3), "song_180s_realtime_x": round(180.0 / long_s, 1),
        "pair_ms": round(pair_s * 1e3, 2), "data_pairs_per_s": round(data_pairs_s, 1),
        "train_step_ms": round(step_s * 1e3, 1), "train_pairs_per_s": round(train_pairs_s, 1),
        "data_over_train_ratio": round(data_pairs_s / train_pairs_s, 2),
        **loader_rates,
    }
    if note:
        res["note"] = note
    for k, v in res.items():
        print(f"{k:>24}: {v}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
