"""Train ENOT across processes with JAX's multi-controller runtime.

Every process runs this same script: ``jax.distributed.initialize``, one
mesh over all processes' devices (``ott_enot.batch_mesh()``), the same
solver. With ``fit(sampler)`` each device draws its own rows of every batch;
with ``--iterators`` each process yields its share of every batch
(``PointCloudStream.loaders`` does it). Progress and the result are printed
by process 0.

Without a cluster or arguments it trains in one process. On one machine, 2
processes on the CPU, one device each (the script starts
both, with JAX's gloo collectives)::

    python examples/multiprocess.py --local 2

On a cluster, one process per host: JAX detects SLURM, Open MPI, Kubernetes
and Cloud TPU from their environment variables::

    srun --nodes=2 --ntasks-per-node=1 python examples/multiprocess.py

Anywhere else, give each process the coordinator (process 0's host and a
free port; or set ``JAX_COORDINATOR_ADDRESS``), the process count and its
id::

    python examples/multiprocess.py --coordinator host0:1234 \\
        --num-processes 2 --process-id 0      # on host0
    python examples/multiprocess.py --coordinator host0:1234 \\
        --num-processes 2 --process-id 1      # on host1

``--checkpoint-dir`` (a directory every process can reach) writes orbax
checkpoints; run again with ``--resume`` to go on from the latest, with any
number of processes.
"""
import argparse
import os
import socket
import subprocess
import sys
import time


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--local", type=int, default=0, metavar="N",
                 help="start N processes on this machine (CPU) and wait")
  p.add_argument("--coordinator", default=None,
                 help="host:port of process 0 (default: auto-detected)")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)
  p.add_argument("--cpu", action="store_true",
                 help="CPU devices, gloo collectives (what --local uses)")
  p.add_argument("--iterators", action="store_true",
                 help="feed host iterators (each process its share) "
                 "instead of sampling on the devices")
  p.add_argument("--dim", type=int, default=8)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--checkpoint-dir", default=None)
  p.add_argument("--resume", action="store_true")
  p.add_argument("--timing", action="store_true",
                 help="train again, compiled, and print both speeds")
  return p.parse_args(argv)


def launch_local(args) -> int:
  """Start ``args.local`` processes of this script on localhost; wait."""
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    port = sock.getsockname()[1]
  rest, skip = [], False
  for a in sys.argv[1:]:  # this script's arguments but --local N
    if skip or a == "--local" or a.startswith("--local="):
      skip = a == "--local"
      continue
    rest.append(a)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  procs = [
      subprocess.Popen([
          sys.executable, __file__, "--coordinator", f"localhost:{port}",
          "--num-processes", str(args.local), "--process-id", str(i), "--cpu"
      ] + rest, env=env) for i in range(args.local)
  ]
  try:
    return max(p.wait() for p in procs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()


def train(args) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  if args.cpu:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(args.coordinator, args.num_processes,
                               args.process_id)
  except ValueError:  # nothing given, no cluster detected: one process
    if args.coordinator or args.num_processes:
      raise

  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from ott.neural.networks import potentials  # pylint: disable=import-outside-toplevel
  import ott_enot  # pylint: disable=import-outside-toplevel

  main = jax.process_index() == 0
  d, n = args.dim, args.batch
  shift = jnp.linspace(-1.0, 1.0, d)

  def sampler(key):  # the global batch; each device draws its rows
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, d))
    return x, 0.5 * jax.random.normal(ky, (n, d)) + shift

  mlp = lambda: potentials.MLP(dim_hidden=[64, 64, 64, 1])
  solver = ott_enot.ExpectileNeuralDual(
      d, neural_f=mlp(), neural_g=mlp(), num_train_iters=args.steps,
      valid_freq=args.steps // 4, mesh=ott_enot.batch_mesh(),
      checkpoint_dir=args.checkpoint_dir, logging=True)
  start = time.perf_counter()
  if args.iterators:
    key = jax.random.key(0)
    x = jax.random.normal(key, (20_000, d))
    y = 0.5 * jax.random.normal(jax.random.fold_in(key, 1), (20_000, d))
    stream = ott_enot.PointCloudStream.from_arrays(x, y + shift, batch_size=n)
    potentials_, logs = solver(*stream.loaders(), resume=args.resume)
  else:
    potentials_, logs = solver.fit(sampler, resume=args.resume)
  seconds = time.perf_counter() - start
  if args.timing:  # the same run again, its programs compiled
    start = time.perf_counter()
    solver.fit(sampler)
    steady = time.perf_counter() - start
  if main:  # one voice: process 0
    print(f"{jax.process_count()} process(es), {len(jax.devices())} "
          f"device(s) in the mesh ({jax.devices()[0].platform}); "
          f"{args.steps} steps in {seconds:.1f} s, compile included "
          f"({args.steps / seconds:.0f} steps/s)")
    print(f"validation w_dist {logs['valid_logs']['w_dist'][-1]:.4f} "
          f"(the exact OT cost of these Gaussians: "
          f"{float(jnp.sum(shift ** 2) + d * 0.25):.4f})")
    if args.timing:
      print(f"again, compiled: {args.steps / steady:.0f} steps/s")
      print(f"RESULT whole={args.steps / seconds:.2f} "
            f"steady={args.steps / steady:.2f}")


def main(argv=None):
  args = _args(argv)
  if args.local:
    sys.exit(launch_local(args))
  train(args)


if __name__ == "__main__":
  main()
