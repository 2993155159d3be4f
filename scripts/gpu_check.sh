#!/usr/bin/env bash
# Run the CUDA-only checks on a machine with a GPU (e.g. the device machine): the precision tests that
# skip on CPU, then the whole suite on CUDA-enabled torch, then FSDP over NCCL in bf16/16-mixed (scripts/gpu_fsdp_check.py).
# Usage: bash scripts/gpu_check.sh   (from the repository root, with fulmen installed in the active env)
set -euo pipefail
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("CUDA:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
python -m pytest -q tests/precision/test_cuda_precision.py -rs
python -m pytest -q -x tests
# FSDP with NCCL in bf16-mixed, bf16-true and 16-mixed: fit, sharded and full checkpoints, resume; meta build.
python scripts/gpu_fsdp_check.py
