"""Figures of the experiments, saved as PNG and PDF; the sweep figures are in
:mod:`ntk_dist.analysis.phase_plots`.

Figures of the experiments (docs/theory.md §6), drawn by ``ntk_dist.study.report`` from arrays
read out of the Parquet files:

- :func:`plot_loss_curves`: train and test loss of every finite network against the
  NTK-GP expected loss (seed essay Fig. 1).
- :func:`plot_function_bands`: the final function, NTK-GP mean +/- 2 std and the
  ensemble mean +/- 2 std, one panel per width (Fig. 2-3).
- :func:`plot_ntk_angle`: Theta_hat(x0, x) against the angle of x at initialisation
  and after training, per width, with the analytic Theta (Fig. 4, Jacot et al. 2018).
- :func:`plot_width_scaling`: the width-scaling quantities on log-log axes with their
  fitted power laws (Lee et al. 2019 Fig. 1 style).

Figures use matplotlib's object API (``matplotlib.figure.Figure`` on the Agg canvas),
so nothing touches pyplot's global state or needs a display. Each function returns the
figure (tests read the plotted data from its artists) and the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.compute as pc
from matplotlib.figure import Figure

from ntk_dist.analysis.figures import Plot, save_plot, width_colours


class LossCurve(NamedTuple):
    """One network's losses at its record steps (for :func:`plot_loss_curves`)."""

    width: int
    steps: np.ndarray  # (R,) record steps
    train: np.ndarray  # (R,) train loss 1/(2m) sum ||f - y||^2
    test: np.ndarray | None  # (R,) test loss, or None without test data


def plot_loss_curves(curves, gp_loss: dict, path: str | Path, *, title: str = "") -> Plot:
    """Train and test loss of finite networks against the NTK-GP expected loss.

    Log-log axes, so step 0 is left out.

    Args:
      curves: sequence of :class:`LossCurve`, coloured by width.
      gp_loss: ``{"train": (steps, loss), "test": (steps, loss)}``, the NTK-GP
        expectation E[1/(2m) sum (f - y)^2] = mean((gp_mean - y)^2 + gp_var) / 2.
      path: output path without suffix (``.png`` and ``.pdf`` are written).
      title: figure title.

    Returns:
      :class:`Plot`; axes 0 (train) and 1 (test) hold per width one line per network
      (gid ``"run"``, x = steps >= 1) and their mean (gid ``"mean"``, when the
      networks share record steps), then the NTK-GP line (gid ``"gp_expected"``).
    """
    if not curves:
        raise ValueError("curves is empty: no runs to plot")
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    widths = sorted({c.width for c in curves})
    colour = dict(zip(widths, width_colours(len(widths)), strict=True))
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for w in widths:
            mine = [c for c in curves if c.width == w and getattr(c, split) is not None]
            for c in mine:
                keep = c.steps >= 1
                y = getattr(c, split)[keep]
                ax.plot(c.steps[keep], y, color=colour[w], lw=0.5, alpha=0.35, gid="run")
            if mine and all(np.array_equal(c.steps, mine[0].steps) for c in mine):
                keep = mine[0].steps >= 1
                # The NTK-GP gives the expected loss: compare the mean, not the median.
                avg = np.mean([getattr(c, split)[keep] for c in mine], axis=0)
                label = f"n={w}: mean of {len(mine)} nets (thin: each net)"
                ax.plot(mine[0].steps[keep], avg, color=colour[w], lw=2, label=label, gid="mean")
        if split in gp_loss:
            steps, loss = (np.asarray(a) for a in gp_loss[split])
            keep = steps >= 1
            (line,) = ax.plot(
                steps[keep], loss[keep], color="k", lw=2, ls="--", label="NTK-GP expectation"
            )
            line.set_gid("gp_expected")
        ax.set(xscale="log", yscale="log", xlabel="GD step t", title=f"{split} loss")
        ax.set_ylabel(r"$\frac{1}{2m}\sum_\alpha (f(x_\alpha) - y_\alpha)^2$")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


class FunctionPanel(NamedTuple):
    """One width's final function (for :func:`plot_function_bands`); arrays share P."""

    label: str  # panel title, e.g. "n=512, 100 nets, step 10000"
    x: np.ndarray  # (P,) sorted test inputs
    members: np.ndarray  # (M, P) network outputs f(x)
    gp_mean: np.ndarray  # (P,) NTK-GP mean at the same step
    gp_std: np.ndarray  # (P,) NTK-GP standard deviation
    target: np.ndarray  # (P,) noise-free target


def plot_function_bands(
    panels, x_train, y_train, path: str | Path, *, title: str = "", max_members: int = 20
) -> Plot:
    """The trained networks' function with the NTK-GP and ensemble +/- 2 std bands.

    Args:
      panels: sequence of :class:`FunctionPanel`, one axes each.
      x_train, y_train: (m,) training inputs and (noisy) targets.
      path: output path without suffix.
      title: figure title.
      max_members: draw at most this many individual networks per panel.

    Returns:
      :class:`Plot`. Each axes holds (by gid): the fill ``"gp_band"`` (NTK-GP mean
      +/- 2 std), lines ``"gp_mean"``, ``"ens_mean"``, ``"ens_band"`` (two lines, lower
      then upper, ensemble mean -/+ 2 std; needs M >= 2), ``"member"`` and
      ``"target"``, and the ``"train"`` scatter.
    """
    if not panels:
        raise ValueError("panels is empty: no runs to plot")
    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, p in zip(axes, panels, strict=True):
        m = p.members.shape[0]
        band = ax.fill_between(
            p.x,
            p.gp_mean - 2 * p.gp_std,
            p.gp_mean + 2 * p.gp_std,
            color="C0",
            alpha=0.25,
            lw=0,
            label=r"NTK-GP mean $\pm$ 2 std",
        )
        band.set_gid("gp_band")
        ax.plot(p.x, p.gp_mean, color="C0", lw=1.5, gid="gp_mean")
        for i, f in enumerate(p.members[:max_members]):
            label = f"networks ({min(m, max_members)} of {m} shown)" if i == 0 else None
            ax.plot(p.x, f, color="grey", lw=0.5, alpha=0.5, label=label, gid="member")
        mean = p.members.mean(0)
        ax.plot(p.x, mean, color="C3", lw=1.5, ls="--", label="ensemble mean", gid="ens_mean")
        if m >= 2:
            std = p.members.std(0, ddof=1)
            for sign in (-1, 1):
                ax.plot(
                    p.x,
                    mean + sign * 2 * std,
                    color="C3",
                    lw=1,
                    label=r"ensemble mean $\pm$ 2 std" if sign < 0 else None,
                    gid="ens_band",
                )
        ax.plot(p.x, p.target, color="k", lw=1, ls=":", label="target (noise-free)", gid="target")
        ax.scatter(x_train, y_train, color="k", s=18, zorder=3, label="train points", gid="train")
        ax.set(xlabel="x", title=p.label)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("f(x)")
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def plot_ntk_angle(
    angle, analytic, theta: dict, path: str | Path, *, steps=(0, None), title: str = ""
) -> Plot:
    """Theta_hat(x0, x) against the angle of x = (cos g, sin g), before and after training.

    Args:
      angle: (P,) angles g in radians, sorted.
      analytic: (P,) infinite-width Theta(x0, x).
      theta: ``{width: (S, 2, P) array}``: per seed, Theta_hat(x0, x) at the first and
        the last record step.
      path: output path without suffix.
      steps: the two record steps, for the panel titles.
      title: figure title.

    Returns:
      :class:`Plot`. Axes 0 (initialisation) and 1 (after training) hold, per width in
      increasing order, one line per seed (gid ``"seed"``), then the analytic line
      (gid ``"analytic"``).
    """
    if not theta:
        raise ValueError("theta is empty: no runs to plot")
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    widths = sorted(theta)
    colours = width_colours(len(widths))
    for j, ax in enumerate(axes):
        for w, c in zip(widths, colours, strict=True):
            for i, curve in enumerate(theta[w][:, j]):
                label = f"n={w} ({theta[w].shape[0]} seeds)" if i == 0 else None
                ax.plot(angle, curve, color=c, lw=0.8, alpha=0.7, label=label, gid="seed")
        ax.plot(
            angle, analytic, color="k", lw=1.5, ls="--", label=r"analytic $\Theta$", gid="analytic"
        )
        when = "initialisation" if j == 0 else "after training"
        step = steps[j]
        ax.set(
            xlabel=r"angle $\gamma$ of $x = (\cos\gamma, \sin\gamma)$ (rad)",
            title=f"{when} (step {step})" if step is not None else when,
        )
        ax.legend(fontsize=8)
    axes[0].set_ylabel(r"$\hat\Theta(x_0, x)$, $x_0 = (1, 0)$")
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


SCALING_LABELS = {
    "sup_lin_gap": r"$\sup_t \|f_t - f^{\rm lin}_t\|$",
    "param_change": r"$\|\theta_T - \theta_0\| / \|\theta_0\|$",
    "ntk_change": r"$\|\Theta_T - \Theta_0\|_F / \|\Theta_0\|_F$",
    "lambda_change": r"$|\lambda_T - \lambda_0| / \lambda_0$",
}


def plot_width_scaling(scaling, path: str | Path, *, title: str = "") -> Plot:
    """Width-scaling quantities against the width on log-log axes, with fitted laws.

    Args:
      scaling: :class:`ntk_dist.analysis.WidthScaling` (per-run values, per-width means,
        fits).
      path: output path without suffix.
      title: figure title.

    Returns:
      :class:`Plot` with one axes per quantity of ``scaling.fits`` (in order): a scatter
      of the runs (gid ``"runs"``), the per-width means with SE error bars, and the
      fitted line a n^p (gid ``"fit"``; absent if no fit).
    """
    fits = scaling.fits.to_pylist()
    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    width = scaling.per_run.column("width").to_numpy()
    for ax, fit in zip(axes, fits, strict=True):
        q = fit["quantity"]
        y = scaling.per_run.column(q).to_numpy(zero_copy_only=False).astype(float)
        ok = np.isfinite(y) & (y > 0)
        ax.scatter(width[ok], y[ok], s=10, color="grey", alpha=0.6, label="runs", gid="runs")
        g = scaling.per_width.filter(pc.equal(scaling.per_width["quantity"], q))
        gw, gm = g.column("width").to_numpy(), g.column("mean").to_numpy()
        gse = np.nan_to_num(g.column("se").to_numpy())
        ax.errorbar(gw, gm, yerr=gse, fmt="o", color="C0", ms=4, label="mean over seeds")
        if np.isfinite(fit["exponent"]):
            xs = np.array([gw.min(), gw.max()], float)
            label = (
                f"fit: slope {fit['exponent']:.3f} "
                f"[{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]\n"
                f"published {fit['published']:g}"
            )
            ax.plot(
                xs, fit["prefactor"] * xs ** fit["exponent"], color="C3", label=label, gid="fit"
            )
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center")
        ax.set_xscale("log", base=2)
        if ok.any():
            ax.set_yscale("log")
        ax.set(xlabel="width n", ylabel=SCALING_LABELS[q])
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))
