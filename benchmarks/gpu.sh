#!/usr/bin/env bash
# The GPU tables in one command (under 10 minutes on one H200), on a machine
# with JAX for its GPU and no network.
#
# Here, with network (ott-jax and jaxopt are pure Python; the rest is there):
#   pip download --no-deps -d wheels ott-jax==0.6.0 jaxopt==0.8.5
# There, from the repository root, with wheels/ carried beside it:
#   bash benchmarks/gpu.sh "$OUT"
# Writes speed.md (steps/s and whole runs against ott at d = 16 and 256,
# batch 1024, 4x128), population.md (16 members at d = 16 against one),
# time_to_accuracy.md and .png (the W2 pair D = 8) into the folder given.
set -euo pipefail
out=${1:-gpu-results}
mkdir -p "$out"
py=${PYTHON:-python3}
"$py" -m pip install --no-index --no-deps wheels/*.whl
"$py" -m pip install --no-index --no-deps --no-build-isolation -e .
export PYTHONUNBUFFERED=1
"$py" -c "import jax; print(jax.devices())" | tee "$out/device.txt"
timeout 300 "$py" benchmarks/speed.py --dims 16 256 --batch 1024 \
  --widths 128 --steps 2000 20000 --steady 2000 | tee "$out/speed.md"
timeout 120 "$py" benchmarks/population.py speed --members 16 --dim 16 \
  --steps 2000 | tee "$out/population.md"
timeout 150 "$py" benchmarks/time_to_accuracy.py --problems w2_8 \
  --seeds 2 --batch 1024 --max-seconds 60 \
  --plot "$out/time_to_accuracy.png" | tee "$out/time_to_accuracy.md"
