"""``make demo``, second part: finite networks against the infinite-width NTK-GP.

The small version of the seed essay's finite-vs-infinite experiment (docs/theory.md §6.1-2):
erf networks with 2 hidden layers, sigma_w = 1.5, sigma_b = 0.05, target f(x) = x^3
on 5 points drawn uniformly from [0, 1] with label noise of standard deviation 0.01.
A few networks of width 512 are trained by full-batch gradient descent on our loss
(docs/theory.md §3); the NTK-GP (docs/theory.md §4, Lee et al. 2019) predicts, from the
infinite-width kernels alone, the distribution of their outputs after the same
number of steps. The demo prints how the two agree and writes a figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np

from ntk_dist.core import validate
from ntk_dist.theory.architecture import FC

#: The seed essay's architecture (docs/theory.md §6.1).
ARCH = FC(depth=2, activation="erf", sigma_w=1.5, sigma_b=0.05)
NOISE_STD = 0.01
N_TRAIN = 5


def kernel_demo(
    out_dir,
    *,
    n_nets: int = 8,
    width: int = 512,
    steps: int = 2000,
    eta_lambda: float = 1.0,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Train ``n_nets`` finite networks and compare them with the NTK-GP; write a figure.

    Kernels and predictions run in float64 (inside ``jax.enable_x64``); the networks
    train in float32. Cost: ``n_nets * steps`` gradient steps of a width-``width``
    network on 5 points (about 10 s for the defaults on 2 CPUs) plus O(grid^2)
    kernel work.

    Args:
      out_dir: directory for ``finite_vs_infinite.png`` and ``summary.json`` (created).
      n_nets: ensemble size (>= 2, for a standard deviation).
      width: hidden width of the finite networks.
      steps: gradient-descent steps.
      eta_lambda: learning rate in units of the infinite-width sharpness: eta = eta_lambda
        / lambda0 with lambda0 the top eigenvalue of Theta(X, X) / m (must be < 2 to converge).
      seed: seeds the data and the initialisations.
      verbose: print the numbers.

    Returns:
      The summary written to ``summary.json`` (learning rate, losses, RMSEs). A rerun
      with the same arguments into a directory that holds the figure and a summary of
      those arguments trains nothing: it returns (and prints) the stored summary.
    """
    n_nets = validate.positive_int(n_nets, "n_nets")
    if n_nets < 2:
        raise ValueError(f"n_nets must be >= 2 to estimate an ensemble spread, got {n_nets}")
    width = validate.positive_int(width, "width")
    steps = validate.positive_int(steps, "steps")
    eta_lambda = validate.positive_float(eta_lambda, "eta_lambda")
    out_dir = Path(out_dir)
    stored = _stored_summary(out_dir, width=width, n_nets=n_nets, steps=steps, seed=seed)
    if stored is not None and stored["eta_lambda_infinite"] == eta_lambda:
        if verbose:
            _print_summary(stored)
            print(f"figure: {out_dir / 'finite_vs_infinite.png'} (stored: nothing trained)")
        return stored

    import jax
    import jax.numpy as jnp

    from ntk_dist.models.empirical import sharpness
    from ntk_dist.models.networks import FCNetwork

    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 1.0, size=(N_TRAIN, 1)), axis=0)
    y = x**3 + NOISE_STD * rng.normal(size=(N_TRAIN, 1))
    grid = np.linspace(-0.25, 1.25, 121)[:, None]
    in_unit = (grid[:, 0] >= 0) & (grid[:, 0] <= 1)

    inf = _infinite_width(x, y, grid, eta_lambda, steps)
    lr = inf["lr"]

    # Finite width: an ensemble trained by full-batch GD in float32.
    net = FCNetwork.from_arch(ARCH, width)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_nets)
    params = jax.vmap(net.init, (0, None, None))(keys, 1, jnp.float32)
    x32, y32, g32 = (jnp.asarray(a, jnp.float32) for a in (x, y, grid))
    lam0 = np.asarray(jax.vmap(lambda p: sharpness(net, p, x32, method="dense"))(params))
    losses, f_grid = _train_ensemble(net, params, x32, y32, g32, lr, steps)

    ens_mean, ens_std = f_grid.mean(axis=0), f_grid.std(axis=0, ddof=1)
    target = grid**3
    rmse = lambda a, b, mask=in_unit: float(np.sqrt(np.mean((a[mask] - b[mask]) ** 2)))
    gp_mean, gp_std = inf["mean"], inf["std"]
    within = np.abs(ens_mean[:, 0] - gp_mean[:, 0]) <= 2 * gp_std / math.sqrt(n_nets)
    summary = {
        "width": width,
        "n_nets": n_nets,
        "steps": steps,
        "seed": seed,
        "lr": lr,
        "eta_lambda_infinite": eta_lambda,
        "eta_lambda0_finite_mean": float(np.mean(lr * lam0)),
        "eta_lambda0_finite_std": float(np.std(lr * lam0, ddof=1)),
        "train_loss_finite_mean": float(losses[:, -1].mean()),
        "train_loss_ntk_gp_expected": float(inf["train_loss"][-1]),
        "rmse_vs_target_ensemble_mean": rmse(ens_mean, target),
        "rmse_vs_target_ntk_gp_mean": rmse(gp_mean, target),
        "rmse_vs_target_nngp_posterior_mean": rmse(inf["nngp_mean"], target),
        "rmse_ensemble_mean_vs_ntk_gp_mean": rmse(ens_mean, gp_mean, slice(None)),
        "mean_std_ensemble": float(ens_std.mean()),
        "mean_std_ntk_gp": float(gp_std.mean()),
        "fraction_grid_ensemble_mean_within_2_standard_errors": float(within.mean()),
    }
    if verbose:
        _print_summary(summary)

    out_dir.mkdir(parents=True, exist_ok=True)
    _figure(out_dir / "finite_vs_infinite.png", x, y, grid, f_grid, losses, inf, summary)
    _write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    if verbose:
        print(f"figure: {out_dir / 'finite_vs_infinite.png'}")
    return summary


def _stored_summary(out_dir: Path, **args) -> dict | None:
    """The summary a finished demo with ``args`` left in ``out_dir``, or None.

    The figure is written before the summary (both atomically), so a summary beside a
    figure means a finished run.
    """
    path = out_dir / "summary.json"
    if not (path.is_file() and (out_dir / "finite_vs_infinite.png").is_file()):
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(summary, dict) and all(summary.get(k) == v for k, v in args.items())
    return summary if same else None


def _infinite_width(x, y, grid, eta_lambda: float, steps: int) -> dict:
    """NTK-GP after ``steps`` GD steps and the NNGP posterior, in float64."""
    import jax

    from ntk_dist.theory.kernels import fc_kernel

    with jax.enable_x64(True):
        return _infinite_width_x64(fc_kernel, x, y, grid, eta_lambda, steps)


def _infinite_width_x64(fc_kernel, x, y, grid, eta_lambda, steps):
    from ntk_dist.theory.gp import nngp_posterior, ntk_gp
    from ntk_dist.theory.predict import max_learning_rate

    m = x.shape[0]
    kern = fc_kernel(np.concatenate([x, grid]), arch=ARCH, get=("nngp", "ntk"))
    theta, k = np.asarray(kern.ntk, np.float64), np.asarray(kern.nngp, np.float64)
    tr, te = slice(0, m), slice(m, None)
    lambda0 = 2 / max_learning_rate(theta[tr, tr])  # top eigenvalue of Theta(X, X) / m
    lr = eta_lambda / lambda0

    # One NTK-GP call on X ∪ grid at log-spaced steps ending at `steps`: the grid block
    # at the last step is the prediction; the X block gives the expected training loss
    # E L = (|mean - y|^2 + k tr cov) / 2m along training.
    ts = np.unique(np.append(np.geomspace(1, steps, 60).astype(int), steps))
    gp = ntk_gp(theta[tr, tr], theta[:, tr], k[tr, tr], k[:, tr], k, y, ts, lr=lr, dynamics="gd")
    mean, cov = np.asarray(gp.mean), np.asarray(gp.cov)
    sq = np.sum((mean[:, tr] - y) ** 2, axis=(1, 2))
    train_loss = (sq + y.shape[1] * np.trace(cov[:, tr, tr], axis1=1, axis2=2)) / (2 * m)
    post = nngp_posterior(k[tr, tr], k[te, tr], k[te, te], y, noise_var=NOISE_STD**2)
    return {
        "lr": lr,
        "mean": mean[-1, te],
        "std": np.sqrt(np.clip(np.diag(cov[-1, te, te]), 0, None)),
        "nngp_mean": np.asarray(post.mean),
        "ts": ts,
        "train_loss": train_loss,
    }


def _train_ensemble(net, params, x, y, grid, lr, steps):
    """GD on 1/(2m) ||f(X) - Y||^2 for every network; returns losses (E, steps+1), f(grid)."""
    import jax
    import jax.numpy as jnp

    m = x.shape[0]

    def loss(p):
        return 0.5 / m * jnp.sum((net.apply(p, x) - y) ** 2)

    def run(p):
        def step(p, _):
            value, grads = jax.value_and_grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grads), value

        p, history = jax.lax.scan(step, p, None, length=steps)
        return jnp.append(history, loss(p)), net.apply(p, grid)

    losses, f_grid = jax.jit(jax.vmap(run))(params)
    return np.asarray(losses, np.float64), np.asarray(f_grid, np.float64)


def _print_summary(s: dict) -> None:
    print(
        f"erf net, depth 2, width {s['width']}, {s['n_nets']} nets, {s['steps']} GD steps, "
        f"lr = {s['lr']:.4g}: eta*lambda0 = {s['eta_lambda_infinite']:.3g} (infinite width), "
        f"{s['eta_lambda0_finite_mean']:.3g} +/- {s['eta_lambda0_finite_std']:.2g} (finite nets)"
    )
    print(
        f"final train loss: finite nets {s['train_loss_finite_mean']:.3e}, "
        f"NTK-GP expectation {s['train_loss_ntk_gp_expected']:.3e}"
    )
    print(
        "test RMSE against x^3 on [0, 1]: "
        f"ensemble mean {s['rmse_vs_target_ensemble_mean']:.4f}, "
        f"NTK-GP mean {s['rmse_vs_target_ntk_gp_mean']:.4f}, "
        f"NNGP posterior {s['rmse_vs_target_nngp_posterior_mean']:.4f}"
    )
    within = 100 * s["fraction_grid_ensemble_mean_within_2_standard_errors"]
    print(
        "ensemble mean vs NTK-GP mean on the grid: "
        f"RMSE {s['rmse_ensemble_mean_vs_ntk_gp_mean']:.4f}, "
        f"within 2 standard errors on {within:.0f}% of points; "
        f"mean std: ensemble {s['mean_std_ensemble']:.4f}, NTK-GP {s['mean_std_ntk_gp']:.4f}"
    )


def _figure(path, x, y, grid, f_grid, losses, inf, s):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, gp_mean, gp_std = grid[:, 0], inf["mean"][:, 0], inf["std"]
    fig, (ax_f, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    ax_f.fill_between(
        g,
        gp_mean - 2 * gp_std,
        gp_mean + 2 * gp_std,
        alpha=0.25,
        color="C0",
        label="NTK-GP mean +/- 2 std",
    )
    ax_f.plot(g, gp_mean, color="C0")
    for i, f in enumerate(f_grid[:, :, 0]):
        label = f"width {s['width']} nets" if i == 0 else None
        ax_f.plot(g, f, color="C1", lw=0.7, alpha=0.6, label=label)
    ax_f.plot(g, f_grid[:, :, 0].mean(axis=0), color="C1", lw=2, ls="--", label="ensemble mean")
    ax_f.plot(g, g**3, color="k", lw=1, ls=":", label="x^3")
    ax_f.scatter(x[:, 0], y[:, 0], color="k", zorder=3, label="train")
    ax_f.set(xlabel="x", ylabel="f(x)", title=f"after {s['steps']} GD steps")
    ax_f.legend(fontsize=8)
    steps = np.arange(losses.shape[1])
    for i, curve in enumerate(losses):
        ax_l.plot(
            steps[1:],
            curve[1:],
            color="C1",
            lw=0.7,
            alpha=0.6,
            label="finite nets" if i == 0 else None,
        )
    ax_l.plot(inf["ts"], inf["train_loss"], color="C0", lw=2, label="NTK-GP expectation")
    ax_l.set(
        xscale="log",
        yscale="log",
        xlabel="step",
        ylabel="train loss 1/(2m) sum (f-y)^2",
        title=f"eta * lambda0 = {s['eta_lambda_infinite']:.2g}",
    )
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/demo"))
    parser.add_argument("--nets", type=int, default=8, help="ensemble size (default 8)")
    parser.add_argument("--steps", type=int, default=2000, help="GD steps (default 2000)")
    args = parser.parse_args(argv)
    kernel_demo(args.out, n_nets=args.nets, steps=args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
