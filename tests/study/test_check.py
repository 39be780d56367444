"""``ntk-dist check OUT``: a real sweep and a real Gram pass; each corruption is named
with its file; truncated Parquet is never read silently."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ntk_dist.cli import main
from ntk_dist.study.check import check_results
from ntk_dist.study.results import read_runs


@pytest.fixture
def sweep_dir(tiny_sweep):
    """The session's tiny sweep (read only: tests that change it work on a _copy)."""
    return tiny_sweep.out_dir


@pytest.fixture(scope="module")
def gram_dir(ray_local, tmp_path_factory):
    from ntk_dist import gram

    out = tmp_path_factory.mktemp("gram") / "out"
    x = np.random.default_rng(0).standard_normal((40, 3))
    gram(x, depth=1, activation="relu", sigma_w=1.5, sigma_b=0.1, tile=16, out=out)
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _parts(out):
    return sorted((out / "runs").glob("part-*.parquet"))


def _problems(out):
    return "\n".join(check_results(out).problems)


def test_a_finished_sweep_passes(sweep_dir, capsys):
    report = check_results(sweep_dir)
    assert report.kind == "sweep" and report.problems == []
    assert "6 runs" in report.summary and "6 of 6 trials complete" in report.summary
    assert main(["check", str(sweep_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith(": OK")


def test_truncated_part_is_named_and_never_read(sweep_dir, tmp_path, capsys):
    out = _copy(sweep_dir, tmp_path)
    part = _parts(out)[0]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    assert f"{part}: unreadable Parquet (truncated" in _problems(out)
    with pytest.raises(ValueError, match=f"{part.name}: unreadable Parquet"):
        read_runs(out)
    assert main(["check", str(out)]) == 2
    err = capsys.readouterr().err
    assert "problem(s)" in err and str(part) in err


def test_duplicated_part_and_stray_temp_file(sweep_dir, tmp_path):
    out = _copy(sweep_dir, tmp_path)
    part = _parts(out)[0]
    twin = out / "runs" / "part-twin.parquet"
    shutil.copy(part, twin)
    stray = out / "runs" / ".tmp-0123-part-x.parquet"
    stray.write_bytes(b"PAR1 half")
    text = _problems(out)
    # A copy has no line in checksums.jsonl of its own: it is named, never read.
    assert f"{twin}: no checksum recorded" in text
    assert f"{stray}: leftover temporary file" in text


def test_missing_journal_and_edited_spec(sweep_dir, tmp_path):
    out = _copy(sweep_dir, tmp_path)
    (out / "study.journal").unlink()
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    spec["training"]["seeds"] = 3
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    text = _problems(out)
    assert f"{out / 'study.journal'}: missing" in text
    assert f"{out / 'spec.yaml'}: hash" in text and "differs from spec.sha256" in text
    assert "do not belong to this directory's spec" in text


def test_lost_runs_of_a_complete_trial_and_a_wrong_schema(sweep_dir, tmp_path):
    out = _copy(sweep_dir, tmp_path)
    first, *_ = _parts(out)
    table = pq.read_table(first)
    first.unlink()
    (out / "runs" / "part-bad.parquet").write_bytes(b"")
    pq.write_table(table.drop_columns(["phase"]), out / "runs" / "part-schema.parquet")
    text = _problems(out)
    assert "is COMPLETE but" in text and "are not in" in text
    assert "part-schema.parquet: missing columns ['phase']" in text
    assert "part-bad.parquet: unreadable Parquet" in text
    (out / "runs" / "part-bad.parquet").unlink()
    with pytest.raises(
        ValueError, match=r"part-schema.parquet: lacks RUN_SCHEMA columns \['phase'\]"
    ):
        read_runs(out)  # never read with the column silently null


def test_runs_that_do_not_match_their_trial(sweep_dir, tmp_path):
    out = _copy(sweep_dir, tmp_path)
    part = _parts(out)[0]
    table = pq.read_table(part)
    trial = table.column("trial").to_numpy() + 100
    table = table.set_column(table.schema.get_field_index("trial"), "trial", pa.array(trial))
    pq.write_table(table.replace_schema_metadata(None), part)  # a legacy part file
    (out / "checksums.jsonl").unlink()
    assert f"names trial {trial[0]}, not in" in _problems(out)


def test_experiment_directory(sweep_dir, tmp_path):
    out = _copy(sweep_dir, tmp_path)
    for name in ("study.journal", "boundaries.parquet"):
        (out / name).unlink()
    (out / "spec.yaml").write_text(yaml.safe_dump({"experiment": "finite_vs_infinite"}))
    pq.write_table(pa.table({"x": [1.0]}), out / "reference.parquet")
    report = check_results(out)
    assert report.kind == "experiment" and report.problems == [], report.problems
    ref = out / "reference.parquet"
    ref.write_bytes(ref.read_bytes()[:-10])
    assert f"{ref}: unreadable Parquet" in _problems(out)


def test_gram_directory(gram_dir, tmp_path):
    report = check_results(gram_dir)
    assert report.kind == "gram" and report.problems == [], report.problems
    assert "40 x 40, 6/6 tiles" in report.summary

    out = _copy(gram_dir, tmp_path)
    log = out / "tiles.log"
    log.write_text("\n".join(log.read_text().splitlines()[1:]) + "\n")
    (out / "manifest.json.tmp").write_text("{")
    text = _problems(out)
    assert "COMPLETE: present but 1 of 6 tiles are not in tiles.log" in text
    assert "manifest.json.tmp: leftover temporary file" in text

    (out / "COMPLETE").unlink()
    npy = out / "ntk.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    text = _problems(out)
    assert "unfinished Gram, no COMPLETE marker (5 of 6 tiles done)" in text
    assert f"{npy}: missing, truncated or unreadable" in text


def test_not_a_results_directory(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 2
    assert "neither a sweep/experiment" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nope")]) == 2


def test_a_results_directory_of_the_old_labels_passes(sweep_dir, tmp_path):
    # Part files written before sharpness_catapult, with the old label "catapult" (and,
    # as every directory of that time, no checksum manifest).
    out = _copy(sweep_dir, tmp_path)
    (out / "checksums.jsonl").unlink()
    for part in _parts(out):
        table = pq.read_table(part).drop_columns(["sharpness_catapult"])
        phase = [p.replace("loss_catapult", "catapult") for p in table["phase"].to_pylist()]
        table = table.set_column(table.schema.get_field_index("phase"), "phase", pa.array(phase))
        pq.write_table(table.replace_schema_metadata(None), part)  # no spec-hash metadata
    assert _problems(out) == ""
    assert read_runs(out).num_rows == read_runs(sweep_dir).num_rows


def test_a_sweep_killed_before_its_first_part_file_is_not_corrupt(tiny_sweep_spec, tmp_path):
    from ntk_dist.study.results import prepare_output
    from ntk_dist.study.spec import parse_spec
    from ntk_dist.study.trials import next_round, open_study

    spec = parse_spec(tiny_sweep_spec)
    out = tmp_path / "out"
    prepare_output(spec, out)
    next_round(spec, open_study(spec, out))  # asked, nothing trained yet
    report = check_results(out)
    assert report.problems == [] and "3 pending (interrupted: rerun to resume)" in report.summary
