#!/usr/bin/env bash
# One short GPU check for docs/performance.md, run from the repo root on a CUDA machine that has
# torch/torchaudio but not soundfile (carry its wheels in .whl/lead/). Writes figures under $OUT.
set -x
OUT=${OUT:-/tmp/maskkit-gpu}; mkdir -p "$OUT"
if ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/lead/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
nvidia-smi --query-gpu=name,memory.total --format=csv
timeout 30 python3 benchmarks/bench_temporal.py --device cuda --batch-size 64 --json "$OUT/temporal_b64.json"
# eager bf16 and compiled bf16, with a profile of the heaviest kernels of every variant (issue 3: where
# the time goes at B=256 before anything else is tried)
timeout 150 python3 benchmarks/bench_creative_agent.py --device cuda --dtype bf16 --batch-size 64,256 --iters 10 --repeats 5 --compile --profile "$OUT/agent_profile.txt" --json "$OUT/agent_bf16.json"
timeout 40 python3 benchmarks/bench_creative_agent.py --device cuda --dtype fp32 --batch-size 64,256 --iters 10 --repeats 5 --json "$OUT/agent_fp32.json"
# CUDA graphs (torch.compile mode reduce-overhead) for the launch-bound B=64 (issue 3's 5x goal)
timeout 150 python3 benchmarks/bench_creative_agent.py --device cuda --dtype bf16 --batch-size 64,256 --iters 10 --repeats 5 --compile --compile-mode reduce-overhead --json "$OUT/agent_bf16_graphs.json"
# cuDNN's autotuned convolution algorithms (reference and ours alike), and ours with every
# convolution as a GEMM instead of a cuDNN kernel, side by side at B=256
timeout 150 python3 benchmarks/bench_creative_agent.py --device cuda --dtype bf16 --batch-size 256 --iters 10 --repeats 5 --compile --cudnn-benchmark --gemm-convs --json "$OUT/agent_bf16_cudnn_gemm.json"
timeout 70 python3 benchmarks/bench_train.py --device cuda --bf16 --e2e-steps 10 --repeats 5 --json "$OUT/train.json"
