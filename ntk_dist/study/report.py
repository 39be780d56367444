"""``ntk-dist report OUT``: figures and a Markdown summary from the Parquet results alone.

``OUT`` is one experiment or sweep directory (it holds ``spec.yaml``) or a root of
several (each immediate subdirectory with ``spec.yaml`` or ``runs/``). Nothing is
trained or recomputed from the model: every number comes from ``runs/*.parquet``,
``reference.parquet`` and ``boundaries.parquet`` through :mod:`ntk_dist.analysis`.

What is drawn into ``OUT/figures/`` (PNG and PDF; prefixed ``<subdir>_`` for a root),
per kind (the spec's ``experiment:`` key; a spec with ``search:`` is a phase sweep):

- ``finite_vs_infinite``, ``ensemble``: ``loss_curves`` (train/test loss of every
  network against the NTK-GP expected loss) and ``function`` (final function with the
  NTK-GP and ensemble +/- 2 std bands, one panel per width); the report gives, per
  width, the ensemble's agreement with the NTK-GP on test points in [0, 1]
  (:func:`ntk_dist.analysis.stats.compare_to_gp`).
- ``ntk_convergence``: ``ntk_angle`` (Theta_hat(x0, x) at the first and last record
  step, per width and seed, with the analytic Theta) and the numbers of
  :func:`ntk_dist.analysis.stats.ntk_convergence`.
- ``width_scaling``: ``width_scaling`` (log-log, fitted slopes) and the fitted
  exponents with intervals beside the published ones.
- phase sweeps: ``catapult``, ``phase_diagram`` and ``critical``
  (:mod:`ntk_dist.analysis.phase_plots`) and the located c_loss, c_sharp, c_max per
  (width, depth), each beside its published value where the paper's setting is the
  sweep's (:mod:`ntk_dist.analysis.published`), then for ``fc`` sweeps the checks and
  figures of :mod:`ntk_dist.analysis.studies` (docs/studies.md). A
  ``boundaries.parquet`` with the old names (``lazy_catapult``, ``catapult_divergent``)
  is located again from the runs.

``report.md`` is titled with the sweep's or experiment's name (the folder's for a root).

Every input is read and checked before anything is written; a missing or unreadable
file raises ValueError naming it (the CLI exits 2). ``OUT/report.md`` and each figure
are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ntk_dist.analysis import phase_plots, plots, stats, studies
from ntk_dist.analysis.boundaries import estimate_boundaries, legacy_boundaries
from ntk_dist.analysis.published import published_for
from ntk_dist.core.files import write_text_atomic
from ntk_dist.study.results import RUNS_DIR, read_runs, read_spec_data
from ntk_dist.study.spec import spec_kind

GP_KINDS = ("finite_vs_infinite", "ensemble")
KINDS = (*GP_KINDS, "ntk_convergence", "width_scaling", "sweep")
_REFERENCE_COLUMNS = {
    "finite_vs_infinite": ("step", "split", "index", "x", "y", "gp_mean", "gp_var"),
    "ensemble": ("step", "split", "index", "x", "y", "gp_mean", "gp_var"),
    "ntk_convergence": ("index", "angle", "ntk"),
}
_BOUNDARY_COLUMNS = ("width", "depth", "boundary", "eta_lambda0", "ci_low", "ci_high")


class Experiment(NamedTuple):
    """One results directory, read and checked (:func:`load_experiment`).

    Attributes:
      path: the directory.
      name: its name (figure prefix in a root report).
      kind: one of :data:`KINDS`.
      spec: the parsed ``spec.yaml``.
      runs: RUN_SCHEMA rows (non-empty).
      reference: ``reference.parquet`` (None where the kind has none).
      boundaries: ``boundaries.parquet`` of a sweep (else None).
    """

    path: Path
    name: str
    kind: str
    spec: dict
    runs: pa.Table
    reference: pa.Table | None
    boundaries: pa.Table | None


class Report(NamedTuple):
    """What :func:`write_report` wrote.

    Attributes:
      markdown: ``OUT/report.md``.
      plots: ``{figure stem: ntk_dist.analysis.plots.Plot}`` (the Figure, for its plotted data,
        and the PNG and PDF written).
      text: the Markdown written.
    """

    markdown: Path
    plots: dict
    text: str

    @property
    def figures(self) -> tuple[Path, ...]:
        """Every figure file written (PNG and PDF)."""
        return tuple(p for plot in self.plots.values() for p in plot.paths)


def find_experiments(out) -> list[Path]:
    """The experiment/sweep directories under ``out`` (itself, or its subdirectories)."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"{out}: no such results directory; pass the --out of ntk-dist run")
    if (out / "spec.yaml").exists() or (out / RUNS_DIR).is_dir():
        return [out]
    found = sorted(
        d
        for d in out.iterdir()
        if d.is_dir() and ((d / "spec.yaml").exists() or (d / RUNS_DIR).is_dir())
    )
    if not found:
        raise ValueError(
            f"{out}: neither a results directory (spec.yaml, runs/) nor a root of them"
        )
    return found


def load_experiment(path) -> Experiment:
    """Read and check one results directory (ValueError naming the bad file)."""
    path = Path(path)
    spec = read_spec_data(path)
    kind = spec["experiment"] if spec_kind(spec) == "experiment" else "sweep"
    if kind not in KINDS:
        raise ValueError(
            f"{path / 'spec.yaml'}: experiment must be one of {', '.join(KINDS[:-1])} "
            f"(or no experiment key for a sweep), got {kind!r}"
        )
    runs = read_runs(path)
    if runs.num_rows == 0:
        raise ValueError(f"{path / RUNS_DIR}: no runs (part-*.parquet); run the experiment first")
    reference = boundaries = None
    if kind in _REFERENCE_COLUMNS:
        reference = _read_table(path / "reference.parquet", _REFERENCE_COLUMNS[kind])
    if kind == "sweep":
        boundaries = _read_table(path / "boundaries.parquet", _BOUNDARY_COLUMNS)
    if kind == "ntk_convergence" and (
        "test_ntk" not in runs.column_names or runs.column("test_ntk").null_count
    ):
        raise ValueError(
            f"{path / RUNS_DIR}: ntk_convergence runs need the test_ntk column "
            "(training.test_ntk: true)"
        )
    return Experiment(path, path.name, kind, spec, runs, reference, boundaries)


def write_report(out, *, n_boot: int = 1000) -> Report:
    """Draw every figure of the results under ``out`` and write ``out/report.md``.

    Args:
      out: an experiment/sweep directory or a root of several.
      n_boot: bootstrap resamples for the ensemble intervals.

    Returns:
      :class:`Report`.
    """
    out = Path(out)
    experiments = [load_experiment(d) for d in find_experiments(out)]
    root = experiments[0].path != out
    fig_dir = out / "figures"
    heading = experiments[0].spec.get("name", out.name) if not root else (out.name or out)
    lines = [f"# Report: {heading}", ""]
    drawn: dict[str, plots.Plot] = {}
    for exp in experiments:
        prefix = f"{exp.name}_" if root else ""
        section, figs = _SECTIONS[exp.kind](exp, fig_dir, prefix, n_boot)
        lines += [f"## {exp.name} ({exp.kind})", "", *section, ""]
        for fig in figs:
            png = fig.paths[0]
            lines += [f"![{png.stem}](figures/{png.name}) ([PDF](figures/{png.stem}.pdf))", ""]
            drawn[png.stem] = fig
    text = "\n".join(lines)
    md = write_text_atomic(text, out / "report.md")
    return Report(md, drawn, text)


# --- reading -------------------------------------------------------------------------


def _read_table(path: Path, columns) -> pa.Table:
    if not path.is_file():
        raise ValueError(f"{path}: missing; rerun the experiment to write it")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: unreadable Parquet file ({err})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    if table.num_rows == 0:
        raise ValueError(f"{path}: empty table")
    return table


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _last(lists) -> np.ndarray:
    """The last recorded entry of each run's per-step list, stacked: (runs, ...)."""
    return np.array([np.asarray(v[-1], float) for v in lists])


def _by_width(runs: pa.Table) -> dict[int, pa.Table]:
    widths = _col(runs, "width")
    return {int(w): runs.filter(pc.equal(runs["width"], int(w))) for w in sorted(set(widths))}


# --- sections ------------------------------------------------------------------------


def _gp_section(exp: Experiment, fig_dir: Path, prefix: str, n_boot: int):
    ref = exp.reference
    curves = [
        plots.LossCurve(
            int(r["width"]),
            np.asarray(r["record_steps"]),
            np.asarray(r["train_loss"], float),
            None if r["test_loss"] is None else np.asarray(r["test_loss"], float),
        )
        for r in exp.runs.select(["width", "record_steps", "train_loss", "test_loss"]).to_pylist()
    ]
    gl = stats.gp_expected_loss(ref)
    gp_loss = {}
    for split in ("train", "test"):
        t = gl.filter(pc.equal(gl["split"], split))
        gp_loss[split] = (_col(t, "step"), _col(t, "loss"))
    title = f"{exp.name}: finite networks vs the NTK-GP"
    figs = [plots.plot_loss_curves(curves, gp_loss, fig_dir / f"{prefix}loss_curves", title=title)]

    train = _split(ref, "train", None, exp.path)
    panels, rows = [], []
    for w, runs in _by_width(exp.runs).items():
        if runs.column("test_pred").null_count:
            raise ValueError(f"{exp.path / RUNS_DIR}: width {w} runs lack test_pred")
        step = int(runs.column("record_steps")[0].as_py()[-1])
        test = _split(ref, "test", step, exp.path)
        members = _last(runs.column("test_pred").to_pylist())
        members = members[np.isfinite(members).all(axis=1)]  # diverged networks are left out
        if members.shape[1] != test.num_rows:
            raise ValueError(
                f"{exp.path / 'reference.parquet'}: {test.num_rows} test points at step {step}, "
                f"but the runs predict {members.shape[1]} outputs; is k > 1?"
            )
        order = np.argsort(_col(test, "x"), kind="stable")  # lines need sorted inputs
        members = members[:, order]
        x, y, gp_mean, gp_var = (_col(test, c)[order] for c in ("x", "y", "gp_mean", "gp_var"))
        gp_std = np.sqrt(np.clip(gp_var, 0, None))
        m = members.shape[0]
        panels.append(
            plots.FunctionPanel(f"n={w}, {m} nets, step {step}", x, members, gp_mean, gp_std, y)
        )
        rows.append(_agreement(w, step, x, members, gp_mean, gp_var, n_boot))
    figs.append(
        plots.plot_function_bands(
            panels, _col(train, "x"), _col(train, "y"), fig_dir / f"{prefix}function", title=title
        )
    )
    final_train = [r["train_loss"][-1] for r in exp.runs.select(["train_loss"]).to_pylist()]
    lines = [
        f"{exp.runs.num_rows} runs; final train loss: mean over networks "
        f"{np.nanmean(final_train):.3e}, NTK-GP expectation {gp_loss['train'][1][-1]:.3e}.",
        "",
        "Agreement with the NTK-GP at the final step on test points in [0, 1] "
        "(mean: |ens_mean - gp_mean| <= 3 SE; std: ens_std / gp_std within a factor 1.5; "
        "coverage: members inside gp_mean +/- 2 gp_std, 0.954 for draws from the GP):",
        "",
        "Networks whose predictions diverged are left out (nets = those kept). The ensemble "
        "std column is the mean over points of the per-point std and of its 95% bootstrap CI.",
        "",
        "| width | nets | step | mean within 3 SE | std within x1.5 | median std ratio | "
        "+/-2 std coverage | ensemble std (mean, 95% CI) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']} | {r['nets']} | {r['step']} | {_pct(r['mean_within'])} | "
            f"{_pct(r['std_within'])} | {r['std_ratio']:.3g} | {_pct(r['coverage'])} | "
            f"{r['ens_std']:.3g} [{r['std_lo']:.3g}, {r['std_hi']:.3g}] |"
        )
    lines += ["", *_per_width_table(exp.runs, ("loss_final", "param_change"))]
    return lines, figs


def _per_width_table(runs: pa.Table, columns) -> list[str]:
    """Mean and 95% t-interval over seeds per width of scalar run columns (Markdown)."""
    by_col = {c: stats.group_stats(runs, c, by=("width",)).to_pylist() for c in columns}
    lines = [
        "Per width, over seeds (Student-t intervals):",
        "",
        "| width | runs | " + " | ".join(f"{c} mean [95% CI]" for c in columns) + " |",
        "| --- | --- |" + " --- |" * len(columns),
    ]
    for i, row in enumerate(by_col[columns[0]]):
        cells = [
            f"{r['mean']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
            for r in (by_col[c][i] for c in columns)
        ]
        lines.append(f"| {row['width']} | {row['n'] + row['n_nan']} | " + " | ".join(cells) + " |")
    return lines


def _split(ref: pa.Table, split: str, step: int | None, path: Path) -> pa.Table:
    t = ref.filter(pc.equal(ref["split"], split))
    if step is None:  # the inputs: the same at every step
        step = int(pc.min(t["step"]).as_py())
    t = t.filter(pc.equal(t["step"], step)).sort_by("index")
    if t.num_rows == 0:
        raise ValueError(
            f"{path / 'reference.parquet'}: no {split} rows at step {step} "
            "(the runs' last record step)"
        )
    return t


def _agreement(width, step, x, members, gp_mean, gp_var, n_boot) -> dict:
    unit = (x >= 0) & (x <= 1)
    row = dict(width=width, step=step, nets=members.shape[0])
    if members.shape[0] < 2:
        return row | dict.fromkeys(
            ("mean_within", "std_within", "std_ratio", "coverage", "ens_std", "std_lo", "std_hi"),
            math.nan,
        )
    c = stats.compare_to_gp(members[:, unit], gp_mean[unit], gp_var[unit])
    s = stats.ensemble_stats(members[:, unit], n_boot=n_boot)
    return row | dict(
        mean_within=c.frac_mean_within,
        std_within=c.frac_std_within,
        std_ratio=float(np.nanmedian(_col(c.points, "std_ratio"))),
        coverage=c.coverage,
        ens_std=float(np.mean(_col(s, "std"))),
        std_lo=float(np.mean(_col(s, "std_ci_low"))),
        std_hi=float(np.mean(_col(s, "std_ci_high"))),
    )


def _pct(v) -> str:
    return "n/a" if v != v else f"{100 * v:.0f}%"


def _ntk_section(exp: Experiment, fig_dir: Path, prefix: str, n_boot: int):
    ref = exp.reference.sort_by("index")
    angle, analytic = _col(ref, "angle"), _col(ref, "ntk")
    order = np.argsort(angle)
    theta, steps = {}, (0, 0)
    for w, runs in _by_width(exp.runs).items():
        rows = runs.select(["test_ntk", "record_steps", "out_dim"]).to_pylist()
        per_seed = []
        for r in rows:
            k = r["out_dim"]
            first, last = (
                np.asarray(v, float).reshape(-1, k, k)[:, 0, 0]
                for v in (r["test_ntk"][0], r["test_ntk"][-1])
            )
            if first.size != angle.size:
                raise ValueError(
                    f"{exp.path / 'reference.parquet'}: {angle.size} angles, but test_ntk has "
                    f"{first.size} points"
                )
            per_seed.append([first[order], last[order]])
        theta[w] = np.array(per_seed)
        steps = (rows[0]["record_steps"][0], rows[0]["record_steps"][-1])
    conv = stats.ntk_convergence(theta, analytic[order])
    fig = plots.plot_ntk_angle(
        angle[order],
        analytic[order],
        theta,
        fig_dir / f"{prefix}ntk_angle",
        steps=steps,
        title=f"{exp.name}: empirical NTK vs the analytic NTK",
    )
    c = conv.to_pylist()
    lines = [
        "Std across seeds: averaged over the angles. Max rel. error: max over angles of "
        "|seed mean - analytic Theta| / max |Theta| (target at the widest width: <= 5%). "
        "Rel. change: ||Theta_T - Theta_0|| / ||Theta_0|| over the angles, mean +/- SE "
        "over seeds.",
        "",
        "| width | seeds | std across seeds (init) | max rel. error of the mean (init) | "
        f"rel. change after {steps[1]} steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['width']} | {r['n_seeds']} | {r['std_init']:.4g} | {_pct2(r['mean_err_init'])} | "
        f"{r['rel_change']:.3g} +/- {r['rel_change_se']:.2g} |"
        for r in c
    ]
    if len(c) >= 2:
        lo, hi = c[0], c[-1]
        lines += [
            "",
            f"std ratio width {hi['width']} / width {lo['width']}: "
            f"{hi['std_init'] / lo['std_init']:.3f} (target <= 0.35; n^(-1/2) predicts "
            f"{math.sqrt(lo['width'] / hi['width']):.3f}). Relative change after training: "
            f"{hi['rel_change']:.3g} at width {hi['width']} vs {lo['rel_change']:.3g} "
            f"at {lo['width']}.",
        ]
    return lines, [fig]


def _pct2(v) -> str:
    return f"{100 * v:.2f}%"


def _scaling_section(exp: Experiment, fig_dir: Path, prefix: str, n_boot: int):
    lines, figs = [], []
    kinds = sorted(set(exp.runs.column("model_kind").to_pylist()))
    for kind in kinds:
        runs = exp.runs.filter(pc.equal(exp.runs["model_kind"], kind))
        sc = stats.width_scaling(runs)
        tag = f"{prefix}width_scaling" + (f"_{kind}" if len(kinds) > 1 else "")
        figs.append(
            plots.plot_width_scaling(
                sc, fig_dir / tag, title=f"{exp.name}: {kind} model, lazy phase"
            )
        )
        widths = sorted(set(_col(runs, "width").tolist()))
        lines += [
            f"Model `{kind}`, widths {widths[0]} to {widths[-1]} ({len(widths)} widths, "
            f"{runs.num_rows} runs); OLS on log(per-width mean over seeds), 95% t-interval:",
            "",
            "| quantity | fitted exponent | 95% CI | published |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {f['quantity']} | {f['exponent']:.3f} | [{f['ci_low']:.3f}, {f['ci_high']:.3f}] | "
            f"{f['published']:g} |"
            for f in sc.fits.to_pylist()
        ]
        lines += [
            "",
            "Published: Lee et al. 2019's O(n^-1/2) upper bounds; -1 for the toy's lambda in "
            "the lazy phase (Lewkowycz et al. 2020, Thm 1). A slope steeper than a bound "
            "agrees with it: under full-batch MSE training the NTK and the linearisation gap "
            "are known to move by O(1/n) (Dyer & Gur-Ari 2019; Huang & Yau 2019), and "
            "||theta_0|| grows as n for depth >= 2 (as sqrt(n) at depth 1 and for the toy), "
            "so an O(1) parameter change gives a relative change of O(1/n) there.",
            "",
        ]
    return lines, figs


def _sweep_section(exp: Experiment, fig_dir: Path, prefix: str, n_boot: int):
    title = exp.spec.get("name", exp.name)
    early = (exp.spec.get("training") or {}).get("early_steps")
    bounds, lines = exp.boundaries, []
    if legacy_boundaries(bounds):
        # Written before c_loss / c_sharp / c_max: located again from the runs, which hold
        # the trajectories the labels need (docs/theory.md §7).
        bounds = estimate_boundaries(exp.runs, sweep=title, early_steps=early)
        lines += [
            "`boundaries.parquet` uses the old names (lazy_catapult, catapult_divergent); "
            "the boundaries below were located again from the runs.",
            "",
        ]
    figs = [
        phase_plots.plot_catapult(exp.runs, fig_dir / f"{prefix}catapult", title=title),
        phase_plots.plot_phase_diagram(
            exp.runs, bounds, fig_dir / f"{prefix}phase_diagram", title=title, early_steps=early
        ),
        phase_plots.plot_critical(bounds, fig_dir / f"{prefix}critical", title=title),
    ]
    window = "the whole budget" if early is None else f"the first {early} steps"
    lines += [
        f"{exp.runs.num_rows} runs. Located critical values of eta * lambda0 (95% CI; "
        f"labels from {window}, docs/theory.md §7). A published value is shown only where "
        "the paper's setting is this one:",
        "",
        "| width | depth | boundary | eta * lambda0 | 95% CI | published |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in bounds.to_pylist():
        runs = exp.runs
        group = runs.filter(
            pc.and_(pc.equal(runs["width"], r["width"]), pc.equal(runs["depth"], r["depth"]))
        )
        pub = "; ".join(p.text() for p in published_for(group, boundary=r["boundary"])) or "-"
        lines.append(
            f"| {r['width']} | {r['depth']} | {r['boundary']} | {r['eta_lambda0']:.4g} | "
            f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] | {pub} |"
        )
    more = studies.study_section(exp.runs, bounds, fig_dir, prefix, title=title, early_steps=early)
    return lines + more[0], figs + more[1]


_SECTIONS = {
    "finite_vs_infinite": _gp_section,
    "ensemble": _gp_section,
    "ntk_convergence": _ntk_section,
    "width_scaling": _scaling_section,
    "sweep": _sweep_section,
}
