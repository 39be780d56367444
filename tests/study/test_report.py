"""``ntk-dist report``: figures drawn from the Parquet input (plotted data, not pixels),
report.md numbers equal to a direct computation, bad inputs named with exit code 2."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from ntk_dist.analysis.boundaries import estimate_boundaries
from ntk_dist.analysis.stats import compare_to_gp, width_scaling
from ntk_dist.cli import main
from ntk_dist.study.report import write_report
from ntk_dist.study.results import RUN_SCHEMA, append_runs, read_runs

STEPS = [0, 1, 10, 100]
X_TEST = np.linspace(0.0, 1.0, 21)
X_TRAIN = np.array([0.1, 0.3, 0.5, 0.7, 0.9])


def _row(**values) -> dict:
    """A RUN_SCHEMA row: the given values, neutral defaults elsewhere."""
    default = {
        pa.string(): "x",
        pa.int64(): 0,
        pa.float64(): 0.0,
        pa.bool_(): False,
    }
    row = {}
    for f in RUN_SCHEMA:
        if f.name in values:
            row[f.name] = values[f.name]
        elif f.nullable:
            row[f.name] = None
        else:
            row[f.name] = default.get(f.type, [0.0] if pa.types.is_list(f.type) else None)
    row["record_steps"] = values.get("record_steps", STEPS)
    return row


def _write(out, spec: dict, rows, tables: dict | None = None):
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    append_runs(out, pa.Table.from_pylist(rows, schema=RUN_SCHEMA))
    for name, table in (tables or {}).items():
        pq.write_table(table, out / name)
    return out


def _gp(step):
    """A made-up NTK-GP: mean tends to x^3 with t, variance shrinks."""
    s = step / (step + 10)

    def at(x):
        return s * x**3 + (1 - s) * 0.1, 0.01 * (1 + x) * (1 - 0.5 * s)

    return at


def _gp_experiment(out, kind="ensemble", widths=(50, 512), nets=(4, 30), seed=0):
    rng = np.random.default_rng(seed)
    y_train = X_TRAIN**3 + 0.01 * rng.normal(size=X_TRAIN.size)
    ref = []
    for t in STEPS:
        for split, xs, ys in (("train", X_TRAIN, y_train), ("test", X_TEST, X_TEST**3)):
            mean, var = _gp(t)(xs)
            for i in range(xs.size):
                ref.append(
                    dict(
                        step=t,
                        split=split,
                        index=i,
                        x=xs[i],
                        y=ys[i],
                        gp_mean=mean[i],
                        gp_var=var[i],
                        nngp_mean=0.0,
                        nngp_var=1.0,
                    )
                )
    rows = []
    for w, m in zip(widths, nets, strict=True):
        for s in range(m):
            preds = [
                list(_gp(t)(X_TEST)[0] + np.sqrt(_gp(t)(X_TEST)[1]) * rng.normal(size=21))
                for t in STEPS
            ]
            loss = list(np.exp(-np.arange(4.0)) * rng.uniform(0.5, 1.5))
            rows.append(
                _row(
                    width=w,
                    seed=s,
                    model_kind="fc",
                    run_key=f"{w}-{s:03d}",
                    test_pred=preds,
                    train_loss=loss,
                    loss_final=loss[-1],
                    param_change=0.3 / math.sqrt(w) * rng.uniform(0.9, 1.1),
                    test_loss=[2 * v for v in loss],
                )
            )
    spec = {"name": kind, "experiment": kind}
    return _write(out, spec, rows, {"reference.parquet": pa.Table.from_pylist(ref)})


def _files_ok(rep, stems):
    assert set(rep.plots) == set(stems)
    for p in rep.figures:
        assert p.stat().st_size > 1000, p
    assert {p.suffix for p in rep.figures} == {".png", ".pdf"}
    for stem in stems:
        assert f"(figures/{stem}.png)" in rep.text


def _gid(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


def test_ensemble_report_plots_the_parquet_data(tmp_path):
    out = _gp_experiment(tmp_path / "ens")
    rep = write_report(out, n_boot=200)
    _files_ok(rep, ["loss_curves", "function"])
    assert (out / "report.md").read_text() == rep.text
    runs = read_runs(out).to_pylist()
    ref = pq.read_table(out / "reference.parquet").to_pandas()

    ax_train, ax_test = rep.plots["loss_curves"].figure.axes
    for ax, col in ((ax_train, "train_loss"), (ax_test, "test_loss")):
        got = sorted(tuple(line.get_ydata()) for line in _gid(ax, "run"))
        assert got == sorted(tuple(r[col][1:]) for r in runs)  # step 0 off the log axis
        means = [line.get_ydata() for line in _gid(ax, "mean")]
        for w, got_mean in zip((50, 512), means, strict=True):
            want = np.mean([r[col][1:] for r in runs if r["width"] == w], axis=0)
            np.testing.assert_allclose(got_mean, want)
    for ax, split in ((ax_train, "train"), (ax_test, "test")):
        (gp,) = _gid(ax, "gp_expected")
        sub = ref[ref.split == split]
        want = (((sub.gp_mean - sub.y) ** 2 + sub.gp_var) / 2).groupby(sub.step).mean()
        np.testing.assert_allclose(gp.get_xdata(), STEPS[1:])
        np.testing.assert_allclose(gp.get_ydata(), want.loc[STEPS[1:]].to_numpy(), rtol=1e-12)

    final = ref[(ref.split == "test") & (ref.step == STEPS[-1])].sort_values("index")
    for ax, w in zip(rep.plots["function"].figure.axes, (50, 512), strict=True):
        members = np.array([r["test_pred"][-1] for r in runs if r["width"] == w])
        np.testing.assert_allclose(_gid(ax, "ens_mean")[0].get_ydata(), members.mean(0))
        np.testing.assert_allclose(_gid(ax, "gp_mean")[0].get_ydata(), final.gp_mean)
        np.testing.assert_allclose(_gid(ax, "gp_mean")[0].get_xdata(), X_TEST)
        assert len(_gid(ax, "member")) == min(len(members), 20)
        (gp_band,) = [c for c in ax.collections if c.get_gid() == "gp_band"]
        band_y = gp_band.get_paths()[0].vertices[:, 1]
        upper = final.gp_mean + 2 * np.sqrt(final.gp_var)
        assert np.isclose(band_y[:, None], upper.to_numpy()[None]).any(0).all()
        lower, upper = _gid(ax, "ens_band")
        std = members.std(0, ddof=1)
        np.testing.assert_allclose(lower.get_ydata(), members.mean(0) - 2 * std)
        np.testing.assert_allclose(upper.get_ydata(), members.mean(0) + 2 * std)
        # The agreement numbers in report.md equal a direct computation.
        c = compare_to_gp(members, final.gp_mean, final.gp_var)
        row = f"| {w} | {len(members)} | {STEPS[-1]} | {100 * c.frac_mean_within:.0f}% | "
        assert row in rep.text
        changes = [r["param_change"] for r in runs if r["width"] == w]
        assert f"| {w} | {len(members)} | " in rep.text
        assert f" | {np.mean(changes):.3g} [" in rep.text


def test_ntk_convergence_report(tmp_path):
    rng = np.random.default_rng(1)
    angle = np.linspace(-math.pi, math.pi, 33, endpoint=False)
    analytic = 1.0 + np.cos(angle)
    ref = pa.table(
        dict(
            index=np.arange(33),
            angle=angle,
            x1=np.cos(angle),
            x2=np.sin(angle),
            ntk=analytic,
            nngp=0.5 * analytic,
        )
    )
    rows = []
    for w in (500, 10000):
        for s in range(10):
            init = analytic + rng.normal(size=33) * 3 / math.sqrt(w)
            after = init * (1 + 2 / math.sqrt(w))
            rows.append(
                _row(
                    width=w,
                    seed=s,
                    out_dim=1,
                    run_key=f"{w}-{s}",
                    model_kind="fc",
                    record_steps=[0, 200],
                    test_ntk=[list(init), list(after)],
                )
            )
    out = _write(
        tmp_path / "ntk",
        {"name": "ntk", "experiment": "ntk_convergence"},
        rows,
        {"reference.parquet": ref},
    )
    rep = write_report(out)
    _files_ok(rep, ["ntk_angle"])
    ax_init, ax_after = rep.plots["ntk_angle"].figure.axes
    runs = read_runs(out).to_pylist()
    for ax, j in ((ax_init, 0), (ax_after, -1)):
        np.testing.assert_allclose(_gid(ax, "analytic")[0].get_ydata(), analytic)
        got = sorted(tuple(line.get_ydata()) for line in _gid(ax, "seed"))
        assert got == sorted(tuple(r["test_ntk"][j]) for r in runs)
    std = {
        w: np.std([r["test_ntk"][0] for r in runs if r["width"] == w], 0, ddof=1).mean()
        for w in (500, 10000)
    }
    assert f"std ratio width 10000 / width 500: {std[10000] / std[500]:.3f}" in rep.text
    assert "Relative change after training: 0.02 at width 10000 vs 0.0894 at 500" in rep.text


def test_width_scaling_report_fits_the_slopes(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for w in (64, 128, 256, 512, 1024):
        for s in range(2):
            e = np.exp(0.02 * rng.normal(size=4))
            rows.append(
                _row(
                    width=w,
                    seed=s,
                    model_kind="toy",
                    run_key=f"{w}-{s}",
                    sup_lin_gap=w**-1.0 * e[0],
                    param_change=w**-0.5 * e[1],
                    probe_ntk=[[2.0], [2.0 * (1 + w**-1.0 * e[2])]],
                    lambda0=2.0,
                    lambda_final=2.0 + 2 * w**-1.0 * e[3],
                )
            )
    out = _write(tmp_path / "ws", {"name": "ws", "experiment": "width_scaling"}, rows)
    rep = write_report(out)
    _files_ok(rep, ["width_scaling"])
    axes = rep.plots["width_scaling"].figure.axes
    slopes = {}
    for ax, q in zip(
        axes, ("sup_lin_gap", "param_change", "ntk_change", "lambda_change"), strict=True
    ):
        (fit,) = _gid(ax, "fit")
        x, y = fit.get_xdata(), fit.get_ydata()
        slopes[q] = math.log(y[1] / y[0]) / math.log(x[1] / x[0])
        runs = [c for c in ax.collections if c.get_gid() == "runs"][0].get_offsets()
        assert len(runs) == 10
    assert slopes == pytest.approx(
        dict(sup_lin_gap=-1, param_change=-0.5, ntk_change=-1, lambda_change=-1), abs=0.03
    )
    for f in width_scaling(read_runs(out)).fits.to_pylist():
        row = f"| {f['quantity']} | {f['exponent']:.3f} | [{f['ci_low']:.3f}, {f['ci_high']:.3f}] |"
        assert f"{row} {f['published']:g} |" in rep.text


def _sweep_rows():
    """Toy-like runs: loss rises above 2, lambda falls below 2 / eta, diverged above 4."""
    rows = []
    for w in (256, 1024):
        for eta in (1.0, 1.5, 2.5, 3.5, 4.5):
            for s in range(2):
                div = eta > 4
                peak = 1.0 if eta < 2 else 0.1 * w
                loss = [1.0, math.nan, math.nan] if div else [1.0, peak, 0.5]
                lam = [1.0, math.nan, math.nan] if div else [1.0, 1.0, min(1.0, 1.9 / eta)]
                rows.append(
                    _row(
                        width=w,
                        seed=s,
                        model_kind="toy",
                        activation="identity",
                        optimizer="gd",
                        run_key=f"{w}-{eta}-{s}",
                        target_eta_lambda0=eta,
                        eta_lambda0=eta,
                        lambda0=1.0,
                        learning_rate=eta,
                        loss_initial=1.0,
                        diverged=div,
                        lambda_final=lam[-1],
                        loss_peak=1.0 if div else peak,
                        peak_step=0 if div else 1,
                        steps=2,
                        record_steps=[0, 1, 2],
                        train_loss=loss,
                        lambda_t=lam,
                        depth=1,
                        phase="divergent" if div else "loss_catapult" if eta > 2 else "lazy",
                    )
                )
    return rows


def _sweep(out):
    rows = _sweep_rows()
    table = pa.Table.from_pylist(rows, schema=RUN_SCHEMA)
    bounds = estimate_boundaries(table, sweep="toy", n_boot=20)
    spec = {"name": "catapult_toy_spec", "search": {"sampler": "grid"}}
    return _write(out, spec, rows, {"boundaries.parquet": bounds}), bounds


def test_sweep_report_names_the_sweep_and_cites_only_its_setting(tmp_path):
    out, bounds = _sweep(tmp_path / "folder")
    rep = write_report(out)
    assert rep.text.startswith("# Report: catapult_toy_spec\n")
    assert {p.name for p in (out / "figures").iterdir()} == {
        f"{s}.{e}" for s in ("catapult", "phase_diagram", "critical") for e in ("png", "pdf")
    }
    for r in bounds.to_pylist():
        cell = f"| {r['width']} | 1 | {r['boundary']} | {r['eta_lambda0']:.4g} |"
        assert cell in rep.text
    line = next(x for x in rep.text.splitlines() if "| 256 | 1 | c_max |" in x)
    assert line.endswith(
        "| 4 (Lewkowycz et al. 2020, arXiv 2003.02218, §2; the toy model "
        "f = v^T u x / sqrt(n) under GD, solved exactly) |"
    )
    line = next(x for x in rep.text.splitlines() if "| 256 | 1 | c_sharp |" in x)
    assert line.endswith("| - |")  # nothing published for the toy's c_sharp
    assert "Published: 2" not in rep.text


def test_old_results_directory_reads_under_the_new_names(tmp_path):
    # A directory written before c_loss / c_sharp / c_max: runs labelled "catapult"
    # without sharpness_catapult, boundaries named lazy_catapult and catapult_divergent.
    out = tmp_path / "old"
    (out / "runs").mkdir(parents=True)
    (out / "spec.yaml").write_text(yaml.safe_dump({"name": "old_toy", "search": {}}))
    rows = [dict(r, phase=r["phase"].replace("loss_catapult", "catapult")) for r in _sweep_rows()]
    old = pa.Table.from_pylist(rows, schema=RUN_SCHEMA).drop_columns(["sharpness_catapult"])
    pq.write_table(old, out / "runs" / "part-old.parquet")
    new = estimate_boundaries(read_runs(out), sweep="old_toy", n_boot=20)
    legacy = new.filter(pc.is_in(new["boundary"], pa.array(["c_loss", "c_max"])))
    names = {"c_loss": "lazy_catapult", "c_max": "catapult_divergent"}
    legacy = legacy.set_column(
        legacy.column_names.index("boundary"),
        "boundary",
        pa.array([names[b] for b in legacy.column("boundary").to_pylist()]),
    )
    pq.write_table(legacy, out / "boundaries.parquet")
    runs = read_runs(out)
    assert set(runs.column("phase").to_pylist()) == {"lazy", "loss_catapult", "divergent"}
    assert not any(runs.column("sharpness_catapult").to_pylist())  # lambda never rose
    rep = write_report(out)
    assert "old names (lazy_catapult, catapult_divergent)" in rep.text
    for r in new.to_pylist():
        assert f"| {r['width']} | 1 | {r['boundary']} | {r['eta_lambda0']:.4g} |" in rep.text
    assert "lazy_catapult |" not in rep.text
    assert sorted(pq.read_table(out / "boundaries.parquet").column("boundary").to_pylist()) == (
        sorted(legacy.column("boundary").to_pylist())
    )  # the old file is left as it was


def test_root_of_several_experiments_via_the_cli(tmp_path, capsys):
    _gp_experiment(tmp_path / "finite_vs_infinite", kind="finite_vs_infinite", nets=(1, 3))
    _, bounds = _sweep(tmp_path / "catapult_toy")
    assert main(["report", str(tmp_path), "--n-boot", "50"]) == 0
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    stems = [
        "catapult_toy_catapult",
        "catapult_toy_critical",
        "catapult_toy_phase_diagram",
        "finite_vs_infinite_function",
        "finite_vs_infinite_loss_curves",
    ]
    assert figures == sorted(f"{s}.{e}" for s in stems for e in ("pdf", "png"))
    text = (tmp_path / "report.md").read_text()
    assert text.startswith(f"# Report: {tmp_path.name}\n")
    assert (
        "## finite_vs_infinite (finite_vs_infinite)" in text and "## catapult_toy (sweep)" in text
    )
    assert "| 50 | 1 | 100 | n/a |" in text  # one network: no ensemble statistics
    b = bounds.to_pylist()[0]
    assert f"| {b['width']} | {b['depth']} | {b['boundary']} | {b['eta_lambda0']:.4g} |" in text
    assert "wrote" in capsys.readouterr().out


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage, named",
    [
        (
            lambda d: (
                next((d / "runs").glob("part-*.parquet")).unlink()
                or (d / "runs" / "part-0.parquet").write_bytes(b"PAR1 not parquet")
            ),
            "part-0.parquet",
        ),
        (lambda d: _truncate(d / "reference.parquet"), "reference.parquet"),
        (lambda d: (d / "reference.parquet").unlink(), "reference.parquet"),
        (lambda d: (d / "spec.yaml").unlink(), "spec.yaml"),
        (lambda d: (d / "spec.yaml").write_text("experiment: nonsense\n"), "spec.yaml"),
        (
            lambda d: pq.write_table(pa.table({"step": [0]}), d / "reference.parquet"),
            "reference.parquet",
        ),
    ],
    ids=[
        "corrupt-runs",
        "truncated-reference",
        "missing-reference",
        "missing-spec",
        "unknown-experiment",
        "reference-columns",
    ],
)
def test_bad_input_is_named_and_exits_2(tmp_path, capsys, damage, named):
    good = _gp_experiment(tmp_path / "a", nets=(2, 2))
    bad = _gp_experiment(tmp_path / "b", nets=(2, 2))
    damage(bad)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert named in err and str(bad) in err, err
    # Everything is read before anything is written.
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "figures").exists()
    assert not (good / "figures").exists()
