"""CLI plumbing: subcommands register, usage errors exit 2, failures exit with one line."""

import subprocess
import sys

import pytest

from ntk_dist.cli import main


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
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert main(["check", str(out)]) == 0
