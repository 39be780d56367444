"""CLI plumbing: subcommands register, usage errors exit 2, failures exit with one line."""

import subprocess
import sys

import pytest

from ntk_dist.cli import main


def test_version_lists_dependencies(capsys):
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    for name in ("ntk_dist", "jax", "ray", "optuna", "pyarrow"):
        assert name in out


def test_unknown_command_exits_2(capsys):
    # argparse's usage error: what `python -m ntk_dist` exits with (SystemExit).
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


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


def _failing_check(monkeypatch, error):
    import ntk_dist.cli.check as check

    def fail(args):
        raise error

    monkeypatch.setattr(check, "_check", fail)


def test_sigterm_is_a_clean_shutdown_with_exit_143(monkeypatch, capsys):
    import os
    import signal
    import time

    import ntk_dist.cli.check as check

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this at once
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(check, "_check", killed)
    try:
        start = time.perf_counter()
        assert main(["check", "anything"]) == 143
        assert time.perf_counter() - start < 5
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "rerun the same command to resume" in err


def test_permission_errors_and_failed_batches_are_one_line(monkeypatch, capsys):
    from ntk_dist.core.errors import ResumableError

    _failing_check(monkeypatch, PermissionError(13, "Permission denied", "/x/runs"))
    assert main(["check", "anything"]) == 2
    assert "permission denied: /x/runs; make it writable" in capsys.readouterr().err
    _failing_check(monkeypatch, ResumableError("training batch 2 of 3 failed"))
    assert main(["check", "anything"]) == 1
    assert "error: training batch 2 of 3 failed" in capsys.readouterr().err


def test_a_batch_that_fails_after_its_retries_names_the_batch(ray_local, tiny_sweep, tmp_path):
    from ntk_dist.core.errors import ResumableError
    from ntk_dist.study.driver import store_finished_batches
    from ntk_dist.study.spec import load_spec

    spec = load_spec(tiny_sweep.out_dir / "spec.yaml")
    crash = ray_local.remote(lambda: 1 / 0).options(max_retries=0, retry_exceptions=False)
    with pytest.raises(ResumableError) as err:
        store_finished_batches([crash.remote()], tmp_path, spec, {"a": None, "b": None}, None)
    text = str(err.value)
    assert "training batch 1 of 1 failed after" in text and "ZeroDivisionError" in text
    assert "0 of 2 runs of this round were stored" in text and "rerun the same command" in text


@pytest.mark.slow
def test_sigterm_during_a_real_sweep_exits_143_and_the_rerun_resumes(ray_local, tmp_path):
    import os
    import signal
    import time
    from pathlib import Path

    import yaml

    from tests.conftest import TINY_SWEEP

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({**TINY_SWEEP, "name": "tiny_sigterm"}))
    out = tmp_path / "out"
    address = ray_local.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "ntk_dist", "run", str(spec), "--out", str(out)]
    cmd += ["--no-progress", "--address", address]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    deadline = time.time() + 240
    while not (out / "study.journal").exists() and time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"finished before SIGTERM: {proc.communicate()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    # The rerun is not about the process boundary: in process, on the session's Ray.
    assert main(cmd[3:]) == 0
    assert main(["check", str(out)]) == 0
