#!/usr/bin/env bash
# The GPU check, in one short window (~8 minutes on one H100-class GPU): the unit tests and every notebook on CUDA
# in both precisions the course uses -- bf16 autocast (natively-bf16 GPUs: A100, L4, H100) and fp16 autocast + gradient
# scaler (the T4 path, forced with FMLAB_PRECISION=fp16 on any CUDA GPU).  Four jobs run side by side, each under its
# own timeout so that one hang cannot eat the rest:
#   unit tests bf16 | unit tests fp16 | notebooks bf16 (4 at a time) | notebooks fp16 (4 at a time)
# It prints one table per job (seconds, peak GPU memory, pass/fail) and, for each failing notebook, a log with the
# failing cell, the assert message, the traceback and the kernel's stderr (bench/results/cuda-*/NAME.log).
#
#     bash bench/gpu.sh                    # everything
#     JOB_TIMEOUT=300 bash bench/gpu.sh    # seconds allowed per job (default 420)
#     OUT=/some/dir bash bench/gpu.sh      # also copy the tables and logs there
#
# A PyTorch GPU image often lacks the Jupyter stack (nbformat, nbclient, ipykernel, ipywidgets, nbval) and trl,
# datasets, pyreft, pyvene: see ../shared/gpu.md or the README for bringing them as wheels (FMLAB_WHEELS=DIR installs
# every wheel in DIR with --no-index --no-deps into bench/results/site, which is then put on PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU is visible: this script checks the GPU path')" || exit 1
RESULTS=bench/results/gpu
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
if [ -n "${FMLAB_WHEELS:-}" ]; then
  python -m pip install -q --no-index --no-deps --target bench/results/site "$FMLAB_WHEELS"/*.whl
  export PYTHONPATH="$PWD/bench/results/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
missing=$(python - <<'EOF'
import importlib.util
need = ["nbformat", "nbclient", "ipykernel", "ipywidgets", "nbval", "pytest", "pandas", "matplotlib", "tqdm",
        "safetensors", "transformers", "peft", "trl", "datasets", "pyreft", "pyvene"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "missing on this machine: $missing -- bring them as wheels (FMLAB_WHEELS=DIR); the jobs that need them will fail"
fi
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)" \
  | tee "$RESULTS/machine.txt"
export OMP_NUM_THREADS=2 MPLBACKEND=Agg        # ~10 processes share the host's cores
T=${JOB_TIMEOUT:-420}
XDIST=$(python -c "import importlib.util as u; print('-n 4' if u.find_spec('xdist') else '')")
start=$(date +%s)
for p in bf16 fp16; do
  ( FMLAB_DEVICE=cuda FMLAB_PRECISION=$p timeout "$T" python -m pytest -q $XDIST -p no:cacheprovider tests \
      > "$RESULTS/unit-$p.log" 2>&1; echo "exit $?" >> "$RESULTS/unit-$p.log" ) &
  ( timeout "$T" python bench/course.py --device cuda --precision "$p" --jobs 4 --timeout "$((T - 20))" \
      > "$RESULTS/notebooks-$p.txt" 2>&1; echo "exit $?" >> "$RESULTS/notebooks-$p.txt" ) &
done
wait
echo "== all jobs done in $(( $(date +%s) - start )) s"
for p in bf16 fp16; do
  echo "== unit tests, cuda, $p: $(grep -E '(passed|failed|error)' "$RESULTS/unit-$p.log" | tail -n 1) ($(tail -n 1 "$RESULTS/unit-$p.log"))"
  grep -E '^(FAILED|ERROR) ' "$RESULTS/unit-$p.log" | head -n 20
  echo "== notebooks, cuda, $p"
  cat "$RESULTS/notebooks-$p.txt"
done
cp -r bench/results/cuda-* "$RESULTS/" 2>/dev/null || true
if [ -n "${OUT:-}" ]; then cp -r "$RESULTS" "$OUT/"; fi
