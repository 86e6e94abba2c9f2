#!/usr/bin/env bash
# The GPU tables, on a machine with JAX for its GPU and no network (one
# H200: each table under 10 minutes).
#
# Here, with network (ott-jax and jaxopt are pure Python; the rest is there):
#   pip download --no-deps -d .whl ott-jax==0.6.0 jaxopt==0.8.5
# There, from the repository root, with .whl/ carried beside it:
#   bash benchmarks/gpu.sh "$OUT" [TABLE...]
# TABLEs (all when none is named), each written to the folder given:
#   entropic      entropic64.md: EntropicSolver warm against cold at D = 64
#                 (mixtures, then Gaussians), eps 0.1 / 1 / 10, 2 seeds
#   speed         speed.md: steps/s and whole runs against ott at d = 16 and
#                 256, batch 1024, 4x128
#   population    population.md: 16 members at d = 16 against one
#   accuracy      time_to_accuracy.md and .png: the W2 pair D = 8 (needs
#                 ../shared/w2bench beside the repository)
set -euo pipefail
out=${1:-gpu-results}
shift || true
tables=${*:-entropic speed population accuracy}
mkdir -p "$out"
py=${PYTHON:-python3}
# The wheels into a folder of their own (the image's packages stay as they
# are), the package from this checkout.
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
"$py" - <<'EOF' | tee "$out/device.txt"
import importlib.metadata as md
import jax
print(jax.devices())
print(", ".join(f"{n} {md.version(n)}" for n in
                ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                 "ott-jax", "numpy")))
EOF
for table in $tables; do
  case $table in
    entropic)
      # a 20-step smoke run first: a failure shows in seconds, not minutes
      "$py" benchmarks/entropic.py --problems mixture --dims 4 --eps 1 \
        --steps 20 --enot-steps 20 --sample-steps 5 --samples 10 \
        --test-points 5 --joint-points 50 > "$out/entropic_smoke.md"
      timeout 450 "$py" benchmarks/entropic.py --problems mixture gaussian \
        --dims 64 --eps 0.1 1 10 --seeds 0 1 --steps 2000 \
        --enot-steps 5000 --batch 1024 --equal-time \
        | tee "$out/entropic64.md" || true ;;
    speed)
      timeout 300 "$py" benchmarks/speed.py --dims 16 256 --batch 1024 \
        --widths 128 --steps 2000 20000 --steady 2000 | tee "$out/speed.md" ;;
    population)
      timeout 120 "$py" benchmarks/population.py speed --members 16 \
        --dim 16 --steps 2000 | tee "$out/population.md" ;;
    accuracy)
      timeout 150 "$py" benchmarks/time_to_accuracy.py --problems w2_8 \
        --seeds 2 --batch 1024 --max-seconds 60 \
        --plot "$out/time_to_accuracy.png" \
        | tee "$out/time_to_accuracy.md" ;;
    *) echo "unknown table: $table" >&2; exit 2 ;;
  esac
done
