"""Study-layer fixtures: the tiny sweep with training replaced by its stored records."""

import functools
import os

import pytest

from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.study import results, sweep


@pytest.fixture
def stub_training(tiny_sweep, monkeypatch):
    """Sweeps of the tiny spec train nothing: each job's record is looked up by run key
    in the session's tiny sweep (one part file per job), figures are skipped and fsync
    is a no-op (durability is not under test). A sweep that asks a point the tiny
    sweep did not ask fails the lookup with a KeyError."""
    import ray

    records = tiny_sweep.runs.select(RECORD_SCHEMA.names)
    by_key = {k: i for i, k in enumerate(records.column("tag").to_pylist())}

    def submit(jobs, resources=None):
        return [ray.put(records.take([by_key[j.tag]])) for j in jobs]

    monkeypatch.setattr(sweep, "submit_runs", lambda spec, jobs: submit(jobs))
    monkeypatch.setattr(sweep, "_figures", lambda *a: None)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(results, "versions", functools.cache(results.versions))
    return tiny_sweep
