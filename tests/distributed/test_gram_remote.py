"""Gram matrices on object storage (a moto S3 server on 127.0.0.1): uploaded whole when
complete, never marked complete over missing or stale files, checked from the remote copy."""

import io

import numpy as np
import pytest

from ntk_dist import fc_kernel, gram
from ntk_dist.cli import main as cli_main
from ntk_dist.core.storage import Remote
from ntk_dist.distributed.gram_store import DiskSink
from tests.servers import BUCKET

CFG = dict(depth=2, activation="erf", sigma_w=1.3, sigma_b=0.2)


def _x(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 5))


def _remote_array(remote, name):
    return np.load(io.BytesIO(remote.get(name)), allow_pickle=False)


def test_a_gram_lands_whole_on_object_storage_and_checks_from_there(ray_local, s3, capsys):
    uri = f"s3://{BUCKET}/gram/ok"
    x = _x(40)
    res = gram(x, tile=16, out=uri, **CFG)
    want = fc_kernel(x, **CFG)
    np.testing.assert_allclose(res.ntk, want.ntk, rtol=1e-12, atol=1e-14)
    remote = Remote(uri)
    assert remote.files() == ["COMPLETE", "manifest.json", "nngp.npy", "ntk.npy", "tiles.log"]
    np.testing.assert_array_equal(_remote_array(remote, "nngp.npy"), res.nngp)
    np.testing.assert_array_equal(_remote_array(remote, "ntk.npy"), res.ntk)
    assert len(remote.get("tiles.log").decode().splitlines()) == 6  # 3 x 3 tiles, i <= j

    with pytest.raises(ValueError, match="already holds a complete Gram"):
        gram(x, tile=16, out=uri, **CFG)
    assert cli_main(["check", uri]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_failed_remote_run_leaves_no_complete_marker(ray_local, s3, monkeypatch):
    """A run that dies mid-way uploads no matrix; replacing a complete remote Gram
    removes its marker before any work, so stale files are never marked complete."""
    uri = f"s3://{BUCKET}/gram/failed"
    x = _x(40)
    gram(x, tile=16, out=uri, **CFG)
    write = DiskSink.write
    calls = []

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("injected: driver lost its disk")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(DiskSink, "write", dying)
    with pytest.raises(OSError, match="injected"):
        gram(2 * x, tile=16, out=uri, overwrite=True, **CFG)
    files = Remote(uri).files()
    assert "COMPLETE" not in files and "tiles.log" not in files
    monkeypatch.setattr(DiskSink, "write", write)
    res = gram(2 * x, tile=16, out=uri, **CFG)  # no marker: a fresh run, no overwrite needed
    np.testing.assert_allclose(res.nngp, fc_kernel(2 * x, **CFG).nngp, rtol=1e-12, atol=1e-14)
    assert "COMPLETE" in Remote(uri).files()


def test_cli_gram_to_object_storage(ray_local, s3, tmp_path, capsys):
    uri = f"s3://{BUCKET}/gram/cli"
    np.save(tmp_path / "x.npy", _x(20, seed=3))
    args = ["gram", "--x1", str(tmp_path / "x.npy"), "--out", uri, "--depth", "1"]
    assert cli_main([*args, "--sigma-w", "1.5", "--get", "ntk", "--quiet"]) == 0
    assert f"wrote {uri}" in capsys.readouterr().out
    want = fc_kernel(_x(20, seed=3), depth=1, sigma_w=1.5).ntk
    np.testing.assert_allclose(_remote_array(Remote(uri), "ntk.npy"), want, rtol=1e-12)
