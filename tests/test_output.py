"""OutputDir: complete or absent, one JSON-lines file per name."""
import json

import pytest

from ssp_mpi.output import OutputDir


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_metrics_go_to_their_own_files_and_commit_replaces_old(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with OutputDir(final) as out:
        out.append_metrics({"clock": 0})
        out.append_metrics({"t": 0.5}, "metrics_timed.jsonl")
        out.append_metrics({"clock": 1})
        out.write_json("summary.json", {"x": float("inf")})
        assert not (final / "metrics.jsonl").exists()          # nothing in place before commit
    assert lines(final / "metrics.jsonl") == [{"clock": 0}, {"clock": 1}]
    assert lines(final / "metrics_timed.jsonl") == [{"t": 0.5}]
    assert json.loads((final / "summary.json").read_text()) == {"x": "inf"}
    assert not (final / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_leaves_the_old_folder_untouched(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with OutputDir(final) as out:
            out.append_metrics({"clock": 0})
            raise RuntimeError("boom")
    assert (final / "old.txt").read_text() == "old" and not (final / "metrics.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
