"""Peak memory of ``maskkit arrange`` on a long song against a short one.

    python benchmarks/bench_arrange_memory.py                       # 1 min vs 5 min, CPU
    python benchmarks/bench_arrange_memory.py --long 600 --json out.json
    python benchmarks/bench_arrange_memory.py --device cuda

Two synthetic songs of each length are written as 44.1 kHz stereo WAV files (so that
reading, mixdown and resampling are part of what is measured). Each run of
:func:`maskkit.arrange.arrange` (untrained default ``SimpleTransformer`` with the
``temporal`` strategy on the ``stft`` codec, 4 s windows, ``--batch-size`` windows a batch,
output written to WAV) happens in a fresh subprocess, whose peak resident memory is read
from ``/proc/self/status`` (``VmHWM``) and ``getrusage(RUSAGE_SELF)``; on CUDA also
``torch.cuda.max_memory_allocated``. The claim is the ratio long/short of the peaks (the
issue's bound: 1.5); the script also prints the rise over the process's memory before
``arrange`` (imports and model), which is what the song's length can change.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
from maskkit.arrange import arrange
from maskkit.model import build_model
from maskkit.plugins import build_codec

def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1

a = json.loads(sys.argv[1])
torch.manual_seed(0)
codec = build_codec("stft")
model = build_model(None, "temporal", spec=codec.spec).eval()
before = rss_kib("VmRSS")
dev = torch.device(a["device"])
if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats(dev)
t0 = time.perf_counter()
res = arrange(a["input"], a["target"], a["output"], model=model, codec=codec, batch_size=a["batch_size"],
              device=dev, window_seconds=a["window"])
wall = time.perf_counter() - t0
out = {"before_kib": before, "vmhwm_kib": rss_kib("VmHWM"),
       "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
       "wall_s": wall, "seconds": res.seconds, "windows": res.num_windows}
if dev.type == "cuda":
    out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
print("RESULT " + json.dumps(out))
"""


def write_song(path: Path, seconds: float, seed: int, sr: int = 44100) -> None:
    import numpy as np
    import soundfile as sf

    from maskkit.synth import generate_song

    left = generate_song(seed, seconds, sr)
    right = generate_song(seed + 1000, seconds, sr)
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")


def measure(inp: Path, tgt: Path, out: Path, args: argparse.Namespace) -> dict:
    spec = {"input": str(inp), "target": str(tgt), "output": str(out), "device": args.device,
            "batch_size": args.batch_size, "window": args.window}
    env = dict(os.environ, BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"arrange failed in the subprocess:\n{proc.stderr}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    # The parent's view of the same child (max over the children waited for so far).
    res["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", type=float, default=60.0, help="seconds of the short songs")
    p.add_argument("--long", type=float, default=300.0, help="seconds of the long songs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--window", type=float, default=4.0, help="window seconds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    a = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="maskkit-bench-arrange-") as tmp:
        d = Path(tmp)
        runs = {}
        for label, seconds in (("short", a.short), ("long", a.long)):
            inp, tgt = d / f"{label}_in.wav", d / f"{label}_tg.wav"
            write_song(inp, seconds, seed=1)
            write_song(tgt, seconds + 7.0, seed=2)  # different lengths: aligned to the shorter
            t0 = time.perf_counter()
            runs[label] = measure(inp, tgt, d / f"{label}_out.wav", a)
            runs[label]["song_seconds"] = seconds
            runs[label]["bench_wall_s"] = time.perf_counter() - t0
            (d / f"{label}_out.wav").unlink()

    s, l_ = runs["short"], runs["long"]
    peak_ratio = l_["vmhwm_kib"] / s["vmhwm_kib"]
    rise_s = s["vmhwm_kib"] - s["before_kib"]
    rise_l = l_["vmhwm_kib"] - l_["before_kib"]
    result = {
        "benchmark": "arrange_memory", "device": a.device, "batch_size": a.batch_size, "window_s": a.window,
        "threads": a.threads, "python": platform.python_version(), "machine": platform.machine(),
        "short": s, "long": l_, "peak_ratio_long_over_short": peak_ratio,
        "rise_ratio_long_over_short": rise_l / max(rise_s, 1), "bound": 1.5,
        "within_bound": peak_ratio <= 1.5,
    }
    if "cuda_max_allocated_mib" in s:
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
        result["cuda_ratio_long_over_short"] = l_["cuda_max_allocated_mib"] / s["cuda_max_allocated_mib"]
    mib = 1 / 1024
    for label, r in (("short", s), ("long", l_)):
        rise = (r["vmhwm_kib"] - r["before_kib"]) * mib
        cuda = r.get("cuda_max_allocated_mib")
        print(f"{label:5s} {r['song_seconds']:6.0f} s song: peak RSS {r['vmhwm_kib'] * mib:7.1f} MiB "
              f"(before arrange {r['before_kib'] * mib:6.1f} MiB, rise {rise:6.1f} MiB), "
              f"{r['windows']} windows, {r['wall_s']:.1f} s"
              + (f", CUDA max allocated {cuda:.1f} MiB" if cuda is not None else ""))
    verdict = "ok" if peak_ratio <= 1.5 else "EXCEEDED"
    print(f"peak ratio long/short: {peak_ratio:.3f} (bound 1.5: {verdict}); rise ratio "
          f"{result['rise_ratio_long_over_short']:.2f} for a {a.long / a.short:.0f}x longer song")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
