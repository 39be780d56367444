"""Stored results are never silently wrong: corruption is named, repaired and retrained;
guards that cannot be switched off by deleting a file; legacy directories still resume."""

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from ntk_dist.cli import main
from ntk_dist.core.integrity import MANIFEST, read_manifest
from ntk_dist.study.check import check_results
from ntk_dist.study.results import read_runs
from ntk_dist.study.spec import parse_spec
from ntk_dist.study.sweep import run_sweep
from ntk_dist.study.verify import QUARANTINE, part_problem, table_problems

#: Byte offsets flipped in the corruption test (seeded; the acceptance floor is 200).
N_FLIPS = 240


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _parts(out):
    return sorted((out / "runs").glob("part-*.parquet"))


def _text(out):
    return "\n".join(check_results(out).problems)


def test_every_flipped_byte_of_a_part_file_is_detected_or_harmless(tiny_sweep, tmp_path):
    out = _copy(tiny_sweep.out_dir, tmp_path / "out")
    part = _parts(out)[0]
    original = part.read_bytes()
    content = repr(pq.read_table(part).to_pylist())
    entries, _ = read_manifest(out)
    rng = np.random.default_rng(0)
    offsets = rng.choice(len(original), size=min(N_FLIPS, len(original)), replace=False)
    detected = 0
    for offset in offsets:
        flipped = bytearray(original)
        flipped[offset] ^= 1 << int(rng.integers(8))
        part.write_bytes(bytes(flipped))
        problem = part_problem(out, part, entries)
        if problem is not None:
            assert str(part) in problem
            detected += 1
        else:  # harmless: the table reads back exactly as written
            assert repr(pq.read_table(part).to_pylist()) == content, offset
    assert detected == len(offsets)  # the sha256 sees every flip


def test_flips_without_a_manifest_are_caught_by_page_checksums(tiny_sweep, tmp_path):
    # Legacy mode (no checksums.jsonl): the page CRCs alone still catch flips in data
    # pages; whatever they miss must leave the values unchanged or fail to decode.
    out = _copy(tiny_sweep.out_dir, tmp_path / "out")
    part = _parts(out)[0]
    original = part.read_bytes()
    content = repr(pq.read_table(part).to_pylist())
    first_page = 4  # after the "PAR1" magic: the first column chunk's data page
    silent = 0
    for offset in range(first_page, first_page + 200):
        flipped = bytearray(original)
        flipped[offset] ^= 0x10
        part.write_bytes(bytes(flipped))
        if not table_problems(part, None):
            silent += repr(pq.read_table(part).to_pylist()) != content
    assert silent == 0


def test_a_corrupt_part_is_repaired_and_exactly_its_runs_retrained(stub_training, tmp_path, capsys):
    out = _copy(stub_training.out_dir, tmp_path / "out")
    part = _parts(out)[0]
    lost = set(pq.read_table(part).column("run_key").to_pylist())
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0x01
    part.write_bytes(bytes(data))
    assert f"{part}: corrupt (sha256" in _text(out) or f"{part}: unreadable" in _text(out)
    assert main(["check", "--repair", str(out)]) == 2  # the runs are now missing
    captured = capsys.readouterr()
    assert str(part) in captured.err and "rerun `ntk-dist run`" in captured.out
    assert (out / QUARANTINE / part.name).exists() and not part.exists()
    assert "rerun `ntk-dist run` to retrain them" in _text(out)

    spec = parse_spec(_stored_spec(out))
    lines = []
    result = run_sweep(spec, out, progress=False, echo=lines.append)
    assert result.new_runs == len(lost)
    assert any(f"retraining {len(lost)} run(s)" in line for line in lines)
    assert repr(read_runs(out).drop_columns(["trial"]).to_pylist()) == repr(
        stub_training.runs.drop_columns(["trial"]).to_pylist()
    )
    assert check_results(out).problems == []


def test_next_run_moves_a_corrupt_part_aside_itself(stub_training, tmp_path):
    out = _copy(stub_training.out_dir, tmp_path / "out")
    part = _parts(out)[-1]
    part.write_bytes(part.read_bytes()[:-7] + b"garbage")
    lines = []
    run_sweep(parse_spec(_stored_spec(out)), out, progress=False, echo=lines.append)
    assert any(str(part) in line and QUARANTINE in line for line in lines)
    assert check_results(out).problems == []


def _stored_spec(out) -> dict:
    import yaml

    return yaml.safe_load((out / "spec.yaml").read_text())


def test_a_deleted_spec_hash_does_not_let_another_spec_in(tiny_sweep, tiny_sweep_spec, tmp_path):
    out = _copy(tiny_sweep.out_dir, tmp_path / "out")
    (out / "spec.sha256").unlink()
    other = dict(tiny_sweep_spec, training={"seeds": 2, "steps": 64})
    with pytest.raises(ValueError, match="spec.sha256 is missing, but the runs in"):
        run_sweep(parse_spec(other), out, progress=False)
    assert (out / "spec.yaml").read_text() == (tiny_sweep.out_dir / "spec.yaml").read_text()


def test_a_deleted_spec_hash_before_any_part_file_is_caught_by_the_study(
    stub_training, tiny_sweep_spec, tmp_path
):
    from ntk_dist.study.results import prepare_output
    from ntk_dist.study.trials import check_spec_identity, open_study

    spec = parse_spec(tiny_sweep_spec)
    out = tmp_path / "out"
    prepare_output(spec, out)
    check_spec_identity(open_study(spec, out), spec, out)
    (out / "spec.sha256").unlink()
    other = parse_spec(dict(tiny_sweep_spec, training={"seeds": 2, "steps": 64}))
    with pytest.raises(ValueError, match="holds the study of another spec"):
        run_sweep(other, out, progress=False)


def test_a_garbage_journal_line_is_named_and_nothing_is_appended(stub_training, tmp_path):
    out = _copy(stub_training.out_dir, tmp_path / "out")
    journal = out / "study.journal"
    journal.write_bytes(journal.read_bytes() + b"not json at all\n")
    size = journal.stat().st_size
    n = journal.read_bytes().count(b"\n")
    assert f"{journal}: line {n} is not an Optuna journal record" in _text(out)
    with pytest.raises(ValueError, match=f"study.journal: line {n} is not an Optuna"):
        run_sweep(parse_spec(_stored_spec(out)), out, progress=False)
    assert journal.stat().st_size == size


def test_a_bad_manifest_line_is_named(tiny_sweep, tmp_path):
    out = _copy(tiny_sweep.out_dir, tmp_path / "out")
    with open(out / MANIFEST, "a") as fh:
        fh.write('{"file": 3}\n')
    assert f"{out / MANIFEST}: line" in _text(out)


def test_a_legacy_directory_resumes_and_checks(stub_training, tmp_path):
    # Written before checksums: no manifest, no part metadata, no spec hash in the study.
    out = _copy(stub_training.out_dir, tmp_path / "out")
    (out / MANIFEST).unlink()
    for part in _parts(out):
        pq.write_table(pq.read_table(part).replace_schema_metadata(None), part)
    report = check_results(out)
    n = len(_parts(out))
    assert report.problems == [] and f"({n} legacy part file(s): no checksum" in report.summary
    result = run_sweep(parse_spec(_stored_spec(out)), out, progress=False)
    assert result.new_runs == 0
    report = check_results(out)
    assert report.problems == [] and f"({n} legacy part file(s)" in report.summary


def test_a_changed_figure_or_boundary_table_is_named(tiny_sweep, tmp_path):
    out = _copy(tiny_sweep.out_dir, tmp_path / "out")
    figure = sorted((out / "figures").iterdir())[0]
    figure.write_bytes(figure.read_bytes() + b"\0")
    bounds = out / "boundaries.parquet"
    pq.write_table(pq.read_table(bounds).slice(0, 1), bounds)
    text = _text(out)
    assert f"{figure}: corrupt (sha256" in text and f"{bounds}: corrupt (sha256" in text
