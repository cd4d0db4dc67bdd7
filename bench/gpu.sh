#!/usr/bin/env bash
# The GPU check (issue 13): unit tests and every notebook on a CUDA GPU, in both precisions the course uses --
# bf16 autocast (natively-bf16 GPUs: A100, L4, H100) and fp16 autocast + gradient scaler (the T4 path, forced
# with FMLAB_PRECISION=fp16 on any CUDA GPU).  Prints per-notebook seconds and peak GPU memory.
#
#     bash bench/gpu.sh            # both precisions
#     bash bench/gpu.sh fp16       # one
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU is visible: this script checks the GPU path')"
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
for precision in "${@:-bf16 fp16}"; do
  for p in $precision; do
    echo "== unit tests, cuda, $p"
    FMLAB_DEVICE=cuda FMLAB_PRECISION=$p python -m pytest -q -x tests
    echo "== notebooks, cuda, $p"
    python bench/course.py --device cuda --precision "$p"
  done
done
