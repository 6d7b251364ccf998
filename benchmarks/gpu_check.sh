#!/usr/bin/env bash
# One short GPU check for docs/performance.md, run from the repo root on a CUDA machine that has
# torch/torchaudio but not soundfile (carry its wheels in .whl/lead/). Writes figures under $OUT.
#
#   bash benchmarks/gpu_check.sh          # issue 3 (CreativeAgent vs the seed design): ~6 min
#   bash benchmarks/gpu_check.sh all      # also the temporal mask and training-step benches: ~8 min
#   bash benchmarks/gpu_check.sh b64      # only B=64 under inductor's max-autotune (Triton GEMM/conv
#                                         # templates + CUDA graphs), the one goal still short: ~6 min
#
# Every CreativeAgent run times the fp32 reference, ours eager (fp32 and bf16) and compiled side by
# side in one process, so each JSON is self-contained.
set -x
OUT=${OUT:-/tmp/maskkit-gpu}; mkdir -p "$OUT"
if ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/lead/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
nvidia-smi --query-gpu=name,memory.total --format=csv
AGENT="python3 benchmarks/bench_creative_agent.py --device cuda --dtype bf16 --iters 10 --repeats 5 --compile"
if [ "$1" = "b64" ]; then
  # CUDA graphs + autotuned cuDNN as the baseline of the same process, then max-autotune (which
  # compiles for minutes: its own process, its own timeout).
  timeout 150 $AGENT --batch-size 64 --cudnn-benchmark --compile-mode reduce-overhead --json "$OUT/agent_b64_graphs_cudnn.json"
  timeout 420 $AGENT --batch-size 64 --cudnn-benchmark --compile-mode max-autotune --json "$OUT/agent_b64_max_autotune.json"
  exit 0
fi
# 1. compiled bf16 as measured before, with the heaviest kernels of every variant (where the time goes)
timeout 150 $AGENT --batch-size 64,256 --profile "$OUT/agent_profile.txt" --json "$OUT/agent_bf16.json"
# 2. cuDNN's autotuned convolutions (reference and ours alike; the trainer turns it on on CUDA)
timeout 120 $AGENT --batch-size 64,256 --cudnn-benchmark --json "$OUT/agent_bf16_cudnn.json"
# 3. and CUDA graphs (torch.compile mode reduce-overhead) for the launch-bound B=64
timeout 120 $AGENT --batch-size 64,256 --cudnn-benchmark --compile-mode reduce-overhead --json "$OUT/agent_bf16_graphs_cudnn.json"
if [ "$1" = "all" ]; then
  timeout 30 python3 benchmarks/bench_temporal.py --device cuda --batch-size 64 --json "$OUT/temporal_b64.json"
  timeout 70 python3 benchmarks/bench_train.py --device cuda --bf16 --e2e-steps 10 --repeats 5 --json "$OUT/train.json"
fi
