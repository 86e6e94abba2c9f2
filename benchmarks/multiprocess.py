"""Steps/s of one run on 1 process x 1 device, 1 process x 2 devices and
2 processes x 1 device (``jax.distributed``, gloo), side by side.

    python benchmarks/multiprocess.py --steps 500

Each configuration runs ``examples/multiprocess.py`` (d = 8, batch 256, a
3 x 64 MLP, ``fit(sampler)``) in fresh processes: whole runs with compile
included, then the same run again, compiled. On a CPU the devices share the machine's cores (2 devices on 2
cores add no compute), so this measures what splitting the batch costs
(the all-reduce of every step), not scaling.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys

import common

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "multiprocess.py"


def run(extra, steps, env=None):
  out = subprocess.run(
      [sys.executable, str(EXAMPLE), "--steps", str(steps), "--timing"]
      + extra, env=dict(os.environ, **(env or {})), capture_output=True,
      text=True, timeout=3600, check=True).stdout
  found = re.search(r"RESULT whole=([\d.]+) steady=([\d.]+)", out)
  return float(found.group(1)), float(found.group(2))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=500)
  a = p.parse_args()
  cpu = {"JAX_PLATFORMS": "cpu"}
  force2 = dict(cpu, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  rows = [
      ("1 process x 1 device", run(["--cpu"], a.steps, cpu)),
      ("1 process x 2 devices", run(["--cpu"], a.steps, force2)),
      ("2 processes x 1 device", run(["--local", "2"], a.steps)),
  ]
  print(f"commit {common.commit()}; {a.steps} steps; {os.cpu_count()} CPU "
        f"cores\n")
  print("| configuration | steps/s, whole run (compile included) | "
        "steps/s, compiled | x 1 x 1, compiled |")
  print("|---|---|---|---|")
  for what, (whole, steady) in rows:
    print(f"| {what} | {whole:.1f} | {steady:.1f} | "
          f"{steady / rows[0][1][1]:.3f} |")


if __name__ == "__main__":
  main()
