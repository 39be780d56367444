"""Tiled Ray Grams equal the single-process kernels; failure, resume and bad input."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ntk_dist import FCNetwork, empirical_gram, empirical_ntk, fc_kernel, gram, ntk_matrix
from ntk_dist.cli import main as cli_main
from ntk_dist.distributed.gram import auto_tile
from ntk_dist.distributed.gram_store import LOG, is_complete
from tests.tolerances import atol

store_module = importlib.import_module("ntk_dist.distributed.gram_store")

REPO = Path(__file__).resolve().parents[2]
CFG = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1)


def _x(n, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol(np.float64))


# Acceptance grid: N in {1000, 1537} x tile in {128, 500} x {square, cross} (the cross Gram
# pairs N with the other size), analytic NNGP and NTK and the empirical NTK. Each case runs
# both tiles against one single-process reference; ragged tiles are padded to the tile shape,
# so the session's two Ray workers compile few shapes.
GRID = [(n, square) for n in (1000, 1537) for square in (True, False)]
TILES = (128, 500)


def _pair(n, square, d):
    return _x(n, d), None if square else _x(2537 - n, d, seed=1)


@pytest.mark.parametrize("n, square", GRID)
def test_analytic_sharded_equals_single_process(ray_local, n, square):
    x1, x2 = _pair(n, square, d=8)
    ref = fc_kernel(x1, x2, **CFG)
    for tile in TILES:
        res = gram(x1, x2, tile=tile, **CFG)
        _close(res.nngp, ref.nngp)
        _close(res.ntk, ref.ntk)
        t1, t2 = -(-n // tile), -(-(n if square else x2.shape[0]) // tile)
        assert res.tiles_total == res.tiles_computed == (t1 * (t1 + 1) // 2 if square else t1 * t2)


@pytest.mark.parametrize("n, square", GRID)
def test_empirical_sharded_equals_single_process(ray_local, n, square):
    # A tiny network (widths 16, d = 4) keeps the grid cheap; two outputs test the
    # sample-major (N k, N k) layout.
    model = FCNetwork(widths=(16, 16), out_dim=2, activation="erf", sigma_w=1.3, sigma_b=0.2)
    params = model.init(jax.random.PRNGKey(0), 4, dtype=np.float64)
    x1, x2 = _pair(n, square, d=4)
    ref = ntk_matrix(empirical_ntk(model, params, x1, x2))
    for tile in TILES:
        res = empirical_gram(model, params, x1, x2, tile=tile)
        assert res.nngp is None
        _close(res.ntk, ref)


def test_disk_backed_result_is_marked_complete(ray_local, tmp_path):
    x = _x(300)
    res = gram(x, tile=128, out=tmp_path / "g", get=("ntk",), **CFG)
    assert isinstance(res.ntk, np.memmap) and res.nngp is None
    assert is_complete(tmp_path / "g")
    _close(np.load(tmp_path / "g" / "ntk.npy"), fc_kernel(x, **CFG).ntk)
    assert len((tmp_path / "g" / LOG).read_text().splitlines()) == 6  # 3 tiles -> 3*4/2


def _tile_peak_bytes(b: int) -> int:
    """Memory XLA plans for one B x B cross tile (NNGP and NTK, float64, this file's CFG):
    its compiled program's arguments, outputs and temporaries."""
    x = jax.ShapeDtypeStruct((b, 8), np.float64)
    run = jax.jit(lambda a, c: fc_kernel(a, c, tile=2 * b, **CFG))
    stats = run.lower(x, x).compile().memory_analysis()
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def test_auto_tile_balances_and_respects_memory():
    assert auto_tile(16384, 16384, square=True, workers=2, worker_memory=8e9) == 512
    assert auto_tile(16384, 16384, square=True, workers=2, worker_memory=8e9, gpu=True) == 2048
    small = auto_tile(16384, 16384, square=True, workers=2, worker_memory=64e6)
    assert 128 <= small < 512  # the memory cap, not the cache cap, binds
    # The promise (docstring): a tile fits half the worker's memory. Measured, not assumed.
    assert _tile_peak_bytes(small) <= 0.5 * 64e6
    assert auto_tile(100, 100, square=True, workers=8, worker_memory=8e9) == 128


# --- bad input: rejected before any work, nothing half-written that looks complete ---


@pytest.mark.parametrize("tile", [0, -3, 1.5])
def test_bad_tile(tile, tmp_path):
    with pytest.raises(ValueError, match="tile must be a positive integer"):
        gram(_x(10), tile=tile, out=tmp_path / "g", **CFG)
    assert not (tmp_path / "g").exists()


def test_mismatched_feature_dims(tmp_path):
    with pytest.raises(ValueError, match="same feature dimension"):
        gram(_x(10, 3), _x(10, 4), out=tmp_path / "g", **CFG)
    assert not (tmp_path / "g").exists()


def test_unwritable_out(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not writable"):
        gram(_x(10), out=tmp_path / "file" / "g", **CFG)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(ValueError, match="not writable"):
            gram(_x(10), out=ro / "g", **CFG)
    finally:
        ro.chmod(0o700)


def test_full_out(tmp_path, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda p: Usage)
    with pytest.raises(ValueError, match="GiB free but the Gram needs"):
        gram(_x(100), out=tmp_path / "g", **CFG)
    assert not list((tmp_path / "g").glob("*.npy")) and not is_complete(tmp_path / "g")


def test_complete_out_needs_overwrite(ray_local, tmp_path):
    x = _x(50)
    gram(x, tile=128, out=tmp_path / "g", **CFG)
    before = (tmp_path / "g" / "ntk.npy").stat().st_mtime_ns
    with pytest.raises(ValueError, match="overwrite"):
        gram(2 * x, out=tmp_path / "g", **CFG)
    assert (tmp_path / "g" / "ntk.npy").stat().st_mtime_ns == before
    res = gram(2 * x, tile=128, out=tmp_path / "g", overwrite=True, **CFG)
    _close(res.ntk, fc_kernel(2 * x, **CFG).ntk)


def test_bad_kernel_arguments():
    with pytest.raises(ValueError, match="depth"):
        gram(_x(10), depth=0, activation="relu", sigma_w=1.0, sigma_b=0.0)


# --- CLI ---


def test_cli_npy_and_parquet(ray_local, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x1, x2 = _x(200), _x(70, seed=3)
    np.save(tmp_path / "x1.npy", x1)
    pq.write_table(pa.table({f"f{i}": x2[:, i] for i in range(8)}), tmp_path / "x2.parquet")
    args = ["gram", "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.parquet")]
    args += ["--out", str(tmp_path / "g"), "--depth", "2", "--activation", "relu"]
    args += ["--sigma-w", "1.5", "--sigma-b", "0.1", "--tile", "64", "--quiet"]
    assert cli_main(args) == 0
    ref = fc_kernel(x1, x2, **CFG)
    _close(np.load(tmp_path / "g" / "nngp.npy"), ref.nngp)
    _close(np.load(tmp_path / "g" / "ntk.npy"), ref.ntk)
    assert cli_main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite"]) == 0


def test_cli_bad_input_exits_2(tmp_path, capsys):
    np.save(tmp_path / "x1.npy", _x(20, 3))
    np.save(tmp_path / "x2.npy", _x(20, 4))
    base = ["gram", "--out", str(tmp_path / "g"), "--depth", "1", "--sigma-w", "1", "--quiet"]
    assert (
        cli_main([*base, "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy")]) == 2
    )
    assert "same feature dimension" in capsys.readouterr().err
    assert cli_main([*base, "--x1", str(tmp_path / "x1.npy"), "--tile", "0"]) == 2
    assert "tile must be a positive integer" in capsys.readouterr().err
    assert cli_main([*base, "--x1", str(tmp_path / "missing.npy")]) == 2
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (_x(6, 2).astype(np.complex128) * 1j, "expected real numbers, got dtype complex128"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "1 entries are inf or NaN"),
        (np.array([[1.0, np.nan]]), "1 entries are inf or NaN"),
        (np.array([[True, False]]), "expected real numbers, got dtype bool"),
    ],
    ids=["complex", "inf", "nan", "bool"],
)
def test_cli_rejects_complex_and_non_finite_inputs(tmp_path, capsys, x, match):
    np.save(tmp_path / "x.npy", x)
    args = ["gram", "--x1", str(tmp_path / "x.npy"), "--out", str(tmp_path / "g"), "--quiet"]
    assert cli_main([*args, "--depth", "1", "--sigma-w", "1"]) == 2
    err = capsys.readouterr().err
    assert match in err and "x.npy" in err
    assert not (tmp_path / "g").exists()


def test_python_gram_rejects_complex_and_boolean_inputs(tmp_path):
    x = _x(6, 2)
    with pytest.raises(ValueError, match="x1: expected real numbers, got dtype complex128"):
        gram(x * 1j, out=tmp_path / "g", **CFG)
    with pytest.raises(ValueError, match="x2: expected real numbers, got dtype bool"):
        gram(x, x > 0, out=tmp_path / "g", **CFG)
    assert not (tmp_path / "g").exists()


def test_an_overflowing_gram_is_never_written(ray_local, tmp_path):
    # Finite inputs of 1e308 overflow the kernel (x.x = inf): refused, nothing complete.
    x = np.full((4, 2), 1e308)
    with pytest.raises(ValueError, match="inf or NaN entries in tile"):
        gram(x, tile=2, out=tmp_path / "g", **CFG)
    assert not is_complete(tmp_path / "g")


def test_a_flipped_byte_of_a_stored_gram_is_found(ray_local, tmp_path):
    from ntk_dist.study.check import check_results

    out = tmp_path / "g"
    gram(_x(30, 3), tile=8, out=out, **CFG)
    assert check_results(out).problems == []
    data = bytearray((out / "ntk.npy").read_bytes())
    rng = np.random.default_rng(1)
    for offset in rng.choice(np.arange(128, len(data)), size=20, replace=False):  # past header
        flipped = bytearray(data)
        flipped[offset] ^= 1 << int(rng.integers(8))
        (out / "ntk.npy").write_bytes(bytes(flipped))
        assert "differ from the sha256 logged" in "\n".join(check_results(out).problems) or (
            "is not its transpose" in "\n".join(check_results(out).problems)
        ), offset
    (out / "ntk.npy").write_bytes(bytes(data))


# --- resume after SIGKILL of the driver ---

_DRIVER = """
import sys, numpy as np, jax
jax.config.update("jax_enable_x64", True)
from ntk_dist import gram
from ntk_dist.distributed.gram_store import DiskSink
from ntk_dist.distributed.runtime import ensure_ray
DiskSink._FLUSH_S = 0.0  # checkpoint every tile so the kill lands between checkpoints
ensure_ray(address=sys.argv[2])  # the test session's instance: no second Ray to start
x = np.random.default_rng(0).normal(size=(1100, 8))
gram(x, tile=128, out=sys.argv[1], depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1,
     max_in_flight=2)
"""


def test_resume_after_sigkill(ray_local, tmp_path):
    out = tmp_path / "g"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, str(script), str(out), address], env=env, cwd=REPO)
    total = 9 * 10 // 2  # tile 128, as in the grid above: the session's workers compiled it
    deadline = time.monotonic() + 120
    logged = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / LOG).exists():
            logged = len((out / LOG).read_text().splitlines())
            if logged >= 10:
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 10 <= logged < total, f"driver finished or stalled before the kill ({logged} tiles)"
    assert not is_complete(out)
    done = len((out / LOG).read_text().splitlines())
    x = np.random.default_rng(0).normal(size=(1100, 8))
    res = gram(x, tile=128, out=out, **CFG)
    assert res.tiles_total == total
    assert res.tiles_computed == total - done
    assert is_complete(out)
    ref = fc_kernel(x, **CFG)
    _close(res.nngp, ref.nngp)
    _close(res.ntk, ref.ntk)


# --- node failure on a 3-node loopback cluster, in a subprocess ---

_CLUSTER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    import numpy as np, jax, ray
    from ray.cluster_utils import Cluster
    jax.config.update("jax_enable_x64", True)
    from ntk_dist import fc_kernel, gram
    from ntk_dist.distributed.gram_store import LOG, DiskSink
    DiskSink._FLUSH_S = 0.0  # log every tile, so the removal below is seen mid-Gram

    args = dict(node_ip_address="127.0.0.1", include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, **args))
    workers = [cluster.add_node(num_cpus=1, **args) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    x = np.random.default_rng(0).normal(size=(960, 8))
    cfg = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1)
    log = Path(sys.argv[1]) / LOG
    removed = []

    def kill_when_busy():
        # Remove a node once both workers are computing: some tiles are logged.
        while not log.exists() or len(log.read_text().splitlines()) < 8:
            time.sleep(0.01)
        cluster.remove_node(workers[0])
        removed.append(len(log.read_text().splitlines()))
        cluster.add_node(num_cpus=1, **args)

    threading.Thread(target=kill_when_busy, daemon=True).start()
    res = gram(x, tile=60, max_in_flight=8, out=sys.argv[1], **cfg)
    assert removed and removed[0] < res.tiles_total, "the node was removed after the Gram finished"
    ref = fc_kernel(x, **cfg)
    err = max(float(np.max(np.abs(res.nngp - ref.nngp))), float(np.max(np.abs(res.ntk - ref.ntk))))
    print(json.dumps(dict(err=err, tiles=res.tiles_computed, removed_at=removed[0])))
    ray.shutdown()
    cluster.shutdown()
    """
)


def test_node_failure_during_gram(tmp_path):
    script = tmp_path / "cluster.py"
    script.write_text(_CLUSTER)
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "g")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["err"] <= atol(np.float64)
    assert out["tiles"] == 16 * 17 // 2
    assert 8 <= out["removed_at"] < out["tiles"]  # the node went down mid-Gram
