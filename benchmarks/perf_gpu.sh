#!/usr/bin/env bash
# The GPU rows of `attnlab bench perf` (issue 14, item 5), prepared to run in one go on a lent
# GPU machine (the device tool's nvidia-h200: torch, lightning and numpy are installed there,
# omegaconf is not, and nothing can be downloaded). Not run yet: no session so far had a GPU.
#
# Before the call, on this machine, in the repository root (omegaconf and its parser runtime,
# pure-Python wheels, travel with the working tree; .whl/ must be git-ignored to be carried):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps -d .whl omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
# Then: run(command="bash benchmarks/perf_gpu.sh", carry=[".whl"], timeout_s=480)
#
# What it records, for the d_model 512 Transformer (2 + 2 layers, 8 heads, batch 64 x 256 tokens):
# tokens/s of attnlab's model and of torch.nn.Transformer under bf16 autocast with SDPA limited
# to the flash and memory-efficient kernels, eager and torch.compile'd (what trainer.compile=true
# does), and each one's share of the bf16 matmul peak measured in the same process. A 2-process
# DDP run needs 2 GPUs; with one, the script says so. perf.md and perf.json land in $OUT.
set -euo pipefail
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, omegaconf; print('torch', torch.__version__, torch.cuda.get_device_name())"
out="${OUT:-bench/perf_gpu}"
mkdir -p "$out"
python3 -m attnlab.bench.perf --device cuda --no-mlflow --out "$out" 2>&1 | tee "$out/run.log"
