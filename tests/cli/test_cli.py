"""CLI plumbing: subcommands register, usage errors exit 2."""

import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "ntk_dist", *args], capture_output=True, text=True, timeout=120
    )


def test_version_lists_dependencies():
    out = _run("version")
    assert out.returncode == 0, out.stderr
    for name in ("ntk_dist", "jax", "ray", "optuna", "pyarrow"):
        assert name in out.stdout


def test_unknown_command_exits_2():
    out = _run("no-such-command")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_a_closed_pipe_ends_the_command_without_a_traceback(tmp_path):
    # `ntk-dist validate spec.yaml | head -1` with the reader already gone.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntk_dist", "validate", "sweeps/demo.yaml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.communicate(timeout=120)[1].decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_ctrl_c_says_that_rerunning_resumes(monkeypatch, capsys):
    from ntk_dist.cli import main
    from ntk_dist.study import spec

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(spec, "load_spec", interrupted)
    assert main(["validate", "sweeps/demo.yaml"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_unknown_keys_and_values_suggest_the_closest_name(tmp_path, capsys):
    from ntk_dist.cli import main

    path = tmp_path / "typos.yaml"
    path.write_text(
        "name: typos\nmodel: {kind: tyo, widths: [64]}\n"
        "training: {optimizer: sdg, budget: {bse: 3}}\nsearch: {n_trails: 3, sampler: boundry}\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for field, hint in [
        ("search.n_trails", "n_trials"),
        ("training.budget.bse", "base"),
        ("model.kind", "toy"),
        ("training.optimizer", "sgd"),
        ("search.sampler", "boundary"),
    ]:
        line = next(x for x in err.splitlines() if f": {field}:" in x)
        assert f"did you mean {hint!r}?" in line, line


def test_a_rerun_with_nothing_to_train_starts_no_ray(tiny_sweep, tmp_path, monkeypatch, capsys):
    import shutil

    import yaml

    from ntk_dist.cli import main
    from ntk_dist.distributed import runtime
    from tests.conftest import TINY_SWEEP

    out = tmp_path / "done"
    shutil.copytree(tiny_sweep.out_dir, out)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_SWEEP))

    def no_ray(**kwargs):
        raise AssertionError("Ray was started for a sweep with nothing to train")

    monkeypatch.setattr(runtime, "ensure_ray", no_ray)
    assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet: errors only
