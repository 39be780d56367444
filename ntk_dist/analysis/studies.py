"""Checks and figures of the published phase-transition studies (docs/studies.md).

- :func:`stability_check`: every loss-catapult run must end with lambda_T <= 2 / eta,
  i.e. eta * lambda_T <= 2 (Lewkowycz et al. 2020, §2: the catapult lowers the
  curvature until the linearised dynamics is stable; docs/theory.md §5, §7).
- :func:`plot_catapult_peaks`: the catapult's loss peak (height loss_peak / loss_initial
  and its step) against width n, one line per sampled eta * lambda0.
- :func:`plot_regimes`: Kalra & Barkeshli 2023 (arXiv 2302.12250) Fig. 1 style: c against
  depth / width with the regions shaded (below c_loss: lazy or sharpness reduction;
  c_loss to c_max: loss catapult; above c_max: divergent), c_sharp drawn.
- :func:`edge_of_stability` and :func:`plot_edge_of_stability`: Cohen et al. 2021
  (arXiv 2103.00065): eta * lambda_t / 2 against t, which progressive sharpening lifts
  towards 1 (lambda_t = 2 / eta), where it hovers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ntk_dist.analysis.figures import Plot, check_runs, run_columns, save_plot, width_colours
from ntk_dist.analysis.phase_plots import BOUNDARY_COLOURS, PHASE_COLOURS, STABILITY_EDGE
from ntk_dist.analysis.phases import label_runs

#: Shaded regimes of :func:`plot_regimes`, bottom to top, with their colours.
REGIMES = (
    ("lazy / sharpness reduction", PHASE_COLOURS["sharpness_reduction"]),
    ("loss catapult", PHASE_COLOURS["loss_catapult"]),
    ("divergent", PHASE_COLOURS["divergent"]),
)


def stability_check(runs: pa.Table, *, early_steps: int | None = None, rtol: float = 0.0):
    """Whether every loss-catapult run ends stable: eta * lambda_T <= 2 (1 + rtol).

    Args:
      runs: rows in RECORD_SCHEMA.
      early_steps: the labels' window (:func:`ntk_dist.analysis.phases.label_runs`).
      rtol: relative tolerance on the edge 2.

    Returns:
      dict with ``n`` (loss-catapult runs), ``violations`` (those above the edge),
      ``max_eta_lambda_T`` (largest eta * lambda_T among them, NaN if none) and ``ok``.
    """
    check_runs(runs)
    col = run_columns(runs, "learning_rate", "lambda_final")
    sel = np.asarray(label_runs(runs, early_steps=early_steps).to_pylist()) == "loss_catapult"
    c_final = col["learning_rate"][sel] * col["lambda_final"][sel]
    violations = int(np.sum(~(c_final <= STABILITY_EDGE * (1.0 + rtol))))
    return {
        "n": int(sel.sum()),
        "violations": violations,
        "max_eta_lambda_T": float(c_final.max()) if c_final.size else float("nan"),
        "ok": violations == 0,
    }


def plot_catapult_peaks(
    runs: pa.Table, path: str | Path, *, title: str = "", early_steps: int | None = None
) -> Plot:
    """The loss peak of the loss-catapult runs against width n.

    Left: loss_peak / loss_initial; right: the step of the peak (Lewkowycz et al. 2020
    predict it grows like log n). One line per sampled eta * lambda0 (the sweep's
    ``target_eta_lambda0``, else eta * lambda0 to 3 digits) with catapult runs at two or
    more widths, joining per-width medians over the seeds; every run is a point.

    Returns:
      :class:`Plot`; axes 0 and 1 hold one scatter (all catapult runs) and one line per
      eta * lambda0.
    """
    check_runs(runs)
    col = run_columns(runs, "width", "eta_lambda0", "loss_peak", "loss_initial", "peak_step")
    key = (
        runs.column("target_eta_lambda0").to_numpy(zero_copy_only=False)
        if "target_eta_lambda0" in runs.column_names
        else np.round(col["eta_lambda0"], 3)
    )
    sel = np.asarray(label_runs(runs, early_steps=early_steps).to_pylist()) == "loss_catapult"
    ratio = col["loss_peak"] / col["loss_initial"]
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = ((axes[0], ratio, "loss peak / initial loss"), (axes[1], col["peak_step"], "step"))
    for ax, y, label in panels:
        ax.scatter(col["width"][sel], y[sel], s=10, color="grey", alpha=0.5, label="runs")
        lines = [c for c in np.unique(key[sel]) if len(set(col["width"][sel & (key == c)])) > 1]
        for c, colour in zip(lines, width_colours(len(lines)), strict=True):
            here = sel & (key == c)
            widths = np.unique(col["width"][here])
            ax.plot(
                widths,
                [np.median(y[here & (col["width"] == w)]) for w in widths],
                "o-",
                color=colour,
                ms=4,
                label=rf"$\eta\lambda_0$ = {c:.3g}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width n")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def regime_lines(boundaries: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per boundary, (depth / width, c) of its located rows, sorted by depth / width
    (the mean over groups sharing a depth / width)."""
    out = {}
    rows = [r for r in boundaries.to_pylist() if np.isfinite(r["eta_lambda0"])]
    for name in ("c_loss", "c_sharp", "c_max"):
        pts: dict[float, list[float]] = {}
        for r in rows:
            if r["boundary"] == name:
                pts.setdefault(r["depth"] / r["width"], []).append(r["eta_lambda0"])
        x = np.array(sorted(pts))
        out[name] = (x, np.array([np.mean(pts[v]) for v in x]))
    return out


def _region_edges(boundaries: pa.Table, grid: np.ndarray, *, top: float):
    """The c_loss and c_max edges of the shaded regions on ``grid`` (depth / width),
    interpolated log-log between the groups of ``boundaries`` (held flat beyond them).

    Per group, a c_max not located (nothing diverged in the sampled range) is ``top``;
    a c_loss not located is that group's c_max edge (no loss catapult below it).
    """
    groups: dict[float, dict[str, list[float]]] = {}
    for r in boundaries.to_pylist():
        groups.setdefault(r["depth"] / r["width"], {}).setdefault(r["boundary"], []).append(
            r["eta_lambda0"]
        )
    xs = np.array(sorted(groups))
    c_max, c_loss = [], []
    for x in xs:
        found = {k: [v for v in vs if np.isfinite(v)] for k, vs in groups[x].items()}
        c_max.append(np.mean(found["c_max"]) if found.get("c_max") else top)
        c_loss.append(np.mean(found["c_loss"]) if found.get("c_loss") else c_max[-1])
    return [np.exp(np.interp(np.log(grid), np.log(xs), np.log(c))) for c in (c_loss, c_max)]


def plot_regimes(
    boundaries: pa.Table,
    path: str | Path,
    *,
    runs: pa.Table | None = None,
    title: str = "",
    early_steps: int | None = None,
) -> Plot:
    """c = eta * lambda0 against depth / width with the regimes shaded (module docstring).

    The shading interpolates c_loss and c_max between the located depth / width values
    (log-log); c_sharp is drawn as a line; each located value carries its 95% interval.
    Where a group's c_max was not located (nothing diverged), the loss-catapult region
    reaches the top; where its c_loss was not, the region below reaches c_max. With
    ``runs``, every run is drawn at (depth / width, eta * lambda0), coloured by its
    phase, so the measured labels can be read against the shaded regions.

    Returns:
      :class:`Plot`; the axis holds one PolyCollection per regime shaded (in
      :data:`REGIMES` order) and one error bar container per located boundary.
    """
    if not isinstance(boundaries, pa.Table) or boundaries.num_rows == 0:
        raise ValueError("boundaries must be a non-empty table (estimate_boundaries output)")
    lines = regime_lines(boundaries)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    x_all = np.concatenate([x for x, _ in lines.values()])
    if runs is not None:
        check_runs(runs)
        col = run_columns(runs, "width", "depth", "eta_lambda0")
        labels = np.asarray(label_runs(runs, early_steps=early_steps).to_pylist())
        x_all = np.concatenate([x_all, col["depth"] / col["width"]])
    if x_all.size:
        lo, hi = x_all.min() / 1.3, x_all.max() * 1.3
        grid = np.geomspace(lo, hi, 200)
        edges = [np.full_like(grid, 1e-3), *_region_edges(boundaries, grid, top=1e3)]
        edges.append(np.full_like(grid, 1e3))
        for i, (label, colour) in enumerate(REGIMES):
            if np.any(edges[i + 1] > edges[i] * (1 + 1e-9)):  # an empty region is left out
                ax.fill_between(
                    grid, edges[i], edges[i + 1], color=colour, alpha=0.18, lw=0, label=label
                )
        ax.set_xlim(lo, hi)
    if runs is not None:
        for phase, colour in PHASE_COLOURS.items():
            sel = labels == phase
            if sel.any():
                ax.scatter(
                    (col["depth"] / col["width"])[sel],
                    col["eta_lambda0"][sel],
                    s=8,
                    color=colour,
                    alpha=0.7,
                    label=f"run: {phase}",
                )
    for r in boundaries.to_pylist():
        if not np.isfinite(r["eta_lambda0"]):
            continue
        c = r["eta_lambda0"]
        ax.errorbar(
            [r["depth"] / r["width"]],
            [c],
            yerr=[[c - r["ci_low"]], [r["ci_high"] - c]],
            fmt="o",
            color=BOUNDARY_COLOURS.get(r["boundary"], "k"),
            ms=4,
            capsize=3,
        )
    for name, (x, y) in lines.items():
        if x.size:
            ls = ":" if name == "c_sharp" else "-"
            ax.plot(x, y, ls, color=BOUNDARY_COLOURS[name], lw=1.5, label=f"{name} (95% CI)")
    ax.axhline(STABILITY_EDGE, color="grey", ls="--", lw=1, label="2: linear stability edge")
    ax.set_xscale("log")
    ax.set_yscale("log")
    c_all = [r["ci_high"] for r in boundaries.to_pylist() if np.isfinite(r["ci_high"])]
    ax.set_ylim(0.5, 2.0 * max(c_all + [8.0]))
    ax.set_xlabel("depth / width")
    ax.set_ylabel(r"$c = \eta\,\lambda_0$")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def edge_of_stability(runs: pa.Table, *, settle: float = 0.5) -> pa.Table:
    """Per run, eta * lambda_t / 2 summarised (Cohen et al. 2021; 1 is lambda_t = 2 / eta).

    Args:
      runs: rows in RECORD_SCHEMA.
      settle: the late window is the recorded steps t >= settle * T.

    Returns:
      table with ``run`` (row index), ``width``, ``eta_lambda0``, ``start`` (eta *
      lambda0 / 2), ``peak`` (max of eta * lambda_t / 2), ``onset`` (first recorded step
      with eta * lambda_t / 2 >= 0.95; null if never), ``late_median`` and ``late_max``
      (over the late window), ``loss_final``; NaN where a run diverged.
    """
    check_runs(runs)
    col = run_columns(runs, "width", "eta_lambda0", "learning_rate", "steps", "loss_final")
    steps_l = runs.column("record_steps").to_pylist()
    lam_l = runs.column("lambda_t").to_pylist()
    rows = []
    for i, (t, lam) in enumerate(zip(steps_l, lam_l, strict=True)):
        t = np.asarray(t, float)
        s = col["learning_rate"][i] * np.asarray(lam, float) / 2.0
        ok = np.isfinite(s)
        late = ok & (t >= settle * col["steps"][i])
        hit = np.flatnonzero(ok & (s >= 0.95))
        rows.append(
            {
                "run": i,
                "width": int(col["width"][i]),
                "eta_lambda0": float(col["eta_lambda0"][i]),
                "start": float(col["eta_lambda0"][i] / 2.0),
                "peak": float(s[ok].max()) if ok.any() else float("nan"),
                "onset": int(t[hit[0]]) if hit.size else None,
                "late_median": float(np.median(s[late])) if late.any() else float("nan"),
                "late_max": float(s[late].max()) if late.any() else float("nan"),
                "loss_final": float(col["loss_final"][i]),
            }
        )
    schema = pa.schema(
        [
            ("run", pa.int64()),
            ("width", pa.int64()),
            ("eta_lambda0", pa.float64()),
            ("start", pa.float64()),
            ("peak", pa.float64()),
            ("onset", pa.int64()),
            ("late_median", pa.float64()),
            ("late_max", pa.float64()),
            ("loss_final", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def plot_edge_of_stability(runs: pa.Table, path: str | Path, *, title: str = "") -> Plot:
    """eta * lambda_t / 2 (left) and the training loss (right) against step t, one line
    per run, coloured by eta * lambda0; a dashed line at 1 (lambda_t = 2 / eta).

    Returns:
      :class:`Plot`; axes 0 and 1 hold one line per run (in row order) before the guide.
    """
    check_runs(runs)
    col = run_columns(runs, "eta_lambda0", "learning_rate", "width")
    rank = np.argsort(np.argsort(col["eta_lambda0"], kind="stable"))
    steps_l = runs.column("record_steps").to_pylist()
    lam_l = runs.column("lambda_t").to_pylist()
    loss_l = runs.column("train_loss").to_pylist()
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_s, ax_l = fig.subplots(1, 2, sharex=True)
    colours = width_colours(runs.num_rows)
    for i in range(runs.num_rows):
        label = rf"$\eta\lambda_0$ = {col['eta_lambda0'][i]:.3g}, n = {col['width'][i]}"
        t, colour = np.asarray(steps_l[i], float), colours[rank[i]]
        sharp = col["learning_rate"][i] * np.asarray(lam_l[i], float) / 2
        ax_s.plot(t, sharp, color=colour, lw=1.2, label=label)
        ax_l.plot(t, np.asarray(loss_l[i], float), color=colour, lw=1.2, label=label)
    ax_s.axhline(1.0, color="k", ls="--", lw=1, label=r"$\lambda_t = 2/\eta$")
    ax_s.set_ylabel(r"$\eta\,\lambda_t / 2$")
    ax_l.set_ylabel("training loss")
    ax_l.set_yscale("log")
    for ax in (ax_s, ax_l):
        ax.set_xlabel("step t")
    ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return Plot(fig, save_plot(fig, path))


def study_section(
    runs: pa.Table,
    boundaries: pa.Table | None,
    fig_dir: str | Path,
    prefix: str = "",
    *,
    title: str = "",
    early_steps: int | None = None,
) -> tuple[list[str], list[Plot]]:
    """The report's lines and figures of this module for one sweep of ``fc`` networks
    (nothing for the toy): the stability check of the loss-catapult runs, the catapult
    peaks against width and the regime figure where there are catapults; the
    edge-of-stability summary and figure where every run starts below the stability
    edge (eta * lambda0 < 2, so lambda_t can only approach 2 / eta by sharpening).

    Returns:
      (Markdown lines, :class:`Plot` list); figures go to ``fig_dir/<prefix><name>``.
    """
    check_runs(runs)
    if set(runs.column("model_kind").to_pylist()) != {"fc"}:
        return [], []
    fig_dir, lines, figs = Path(fig_dir), [], []
    c0 = runs.column("eta_lambda0").to_numpy(zero_copy_only=False)
    if np.all(c0 < STABILITY_EDGE):
        eos = edge_of_stability(runs)
        figs.append(
            plot_edge_of_stability(runs, fig_dir / f"{prefix}edge_of_stability", title=title)
        )
        lines += [
            "",
            "Edge of stability (Cohen et al. 2021, arXiv 2103.00065): eta * lambda_t / 2 per "
            "run (1: lambda_t = 2 / eta); late: steps t >= T / 2.",
            "",
            "| width | eta * lambda0 | start | peak | first step >= 0.95 | late median | "
            "late max | final loss |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in eos.to_pylist():
            onset = "-" if r["onset"] is None else str(r["onset"])
            lines.append(
                f"| {r['width']} | {r['eta_lambda0']:.3g} | {r['start']:.3f} | {r['peak']:.3f} "
                f"| {onset} | {r['late_median']:.3f} | {r['late_max']:.3f} | "
                f"{r['loss_final']:.3g} |"
            )
        return lines, figs
    check = stability_check(runs, early_steps=early_steps)
    if check["n"]:
        lines += [
            "",
            f"Stability after the catapult (lambda_T <= 2 / eta, Lewkowycz et al. 2020 §2): "
            f"{check['n'] - check['violations']} of {check['n']} loss-catapult runs; largest "
            f"eta * lambda_T {check['max_eta_lambda_T']:.4g}.",
        ]
        figs.append(
            plot_catapult_peaks(
                runs, fig_dir / f"{prefix}catapult_peaks", title=title, early_steps=early_steps
            )
        )
    if boundaries is not None and boundaries.num_rows:
        figs.append(
            plot_regimes(
                boundaries,
                fig_dir / f"{prefix}regimes",
                runs=runs,
                title=title,
                early_steps=early_steps,
            )
        )
    return lines, figs
