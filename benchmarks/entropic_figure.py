"""The figure of docs/guides/entropic.md: draws of entropic plans at three
epsilon (c = |x - y|^2 / 2) beside ENOT's map, on one 2-D pair of Gaussian
mixtures (``MixturePlan(2, 1.0, seed=2)``). ``python benchmarks/entropic_figure.py``
(about 3 minutes on a 2-core CPU) writes docs/guides/entropic_samples.png."""
import os
import numpy as np, jax, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from ott.geometry import costs
import ott_enot
from ott_enot.evaluation import entropic as E
fig, axes = plt.subplots(1, 4, figsize=(20, 5))
rng = np.random.default_rng(0)
enot = None
plan = E.MixturePlan(2, 1.0, seed=2)  # one pair of measures for all eps
x = plan.sample_source(rng, 20000).astype(np.float32); y = plan.sample_target(rng, 20000).astype(np.float32)
tx = x[:12]
for ax, eps in zip(axes[1:], [0.03, 0.3, 3.0]):
  s = ott_enot.EntropicSolver(2, eps, cost_fn=costs.PNormP(2), num_train_iters=500, progress_bar=False,
        warm_start="train" if enot is None else enot, warm_start_options=dict(num_train_iters=3000))
  p = s.fit(x, y, batch_size=256)
  enot = s.warm_start
  p.plot_samples(tx, y[:2000], num_samples=24, rng=jax.random.key(1), ax=ax)
  d, info = p.sample(tx, 24, jax.random.key(1), return_info=True)
  ax.set_title(f"eps = {eps} (c = |x-y|^2/2): acceptance {float(info.acceptance):.2f}")
  print(eps, "mean spread", float(np.asarray(d).std(1).mean()), "acc", float(info.acceptance))
T = np.asarray(enot.transport(tx))
axes[0].scatter(y[:2000,0], y[:2000,1], s=6, c="tab:orange", alpha=.3, label="target")
axes[0].scatter(tx[:,0], tx[:,1], s=14, c="tab:blue", label="source")
axes[0].scatter(T[:,0], T[:,1], s=14, c="tab:green", label="T(x) (ENOT)")
for a, b in zip(tx, T): axes[0].plot([a[0], b[0]], [a[1], b[1]], c="grey", lw=.5)
axes[0].set_title("ENOT's map (eps -> 0)"); axes[0].legend(fontsize=8)
lims = (min(a.get_xlim()[0] for a in axes), max(a.get_xlim()[1] for a in axes)), (min(a.get_ylim()[0] for a in axes), max(a.get_ylim()[1] for a in axes))
for a in axes: a.set_xlim(*lims[0]); a.set_ylim(*lims[1])
fig.tight_layout(); fig.savefig(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "guides", "entropic_samples.png"), dpi=70)
