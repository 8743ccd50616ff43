"""jobs.lda end to end under mpiexec (through ssp_mpi.launch, with timeouts)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from jobrun import read_model as _model
from jobrun import run_job
from ssp_mpi.launch import REPO, rank_env

pytestmark = pytest.mark.mpi

SMALL = ["--synthetic-docs", "150", "--topics", "6"]


def test_help_lists_every_option_with_default():
    cp = subprocess.run([sys.executable, "-m", "jobs.lda", "--help"], cwd=REPO, env=rank_env(),
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    text = " ".join(cp.stdout.split())
    for opt in ("--data", "--vocab", "--format", "--topics", "-K", "--iterations", "--alpha",
                "--beta", "--sampler", "--staleness", "--servers", "--seed", "--out",
                "--mh-steps", "--min-df", "--checkpoint-dir", "--resume"):
        assert opt in text, opt
    assert "(default: 0.1)" in text and "(default: 0.01)" in text and "(default: auto)" in text
    assert "auto: dense for K <= 400, alias above" in text


def test_default_run_writes_every_output(tmp_path, warm_kernels):
    out = tmp_path / "out"
    cp = run_job("jobs.lda", 3, SMALL + ["--iterations", "4", "--out", out])
    assert cp.returncode == 0, cp.stderr
    # progress from one rank only
    assert cp.stdout.count("iteration 1/4") == 1, cp.stdout
    s = json.loads((out / "summary.json").read_text())
    for key in ("loglik", "loglik_per_token", "perplexity", "iterations", "topics", "tokens",
                "tokens_per_s", "tokens_per_s_per_worker", "staleness", "workers", "servers",
                "wall_s", "compute_s", "comm_s", "wait_s", "config"):
        assert key in s, key
    assert s["workers"] == 2 and s["servers"] == 1 and s["iterations"] == 4 and s["topics"] == 6
    assert s["sampler"] == "dense" and s["config"]["sampler"] == "auto"   # auto at K = 6
    assert s["loglik"] < 0 and s["perplexity"] == pytest.approx(np.exp(-s["loglik_per_token"]))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[-1]["loglik"] == pytest.approx(s["loglik"])
    assert lines[-1]["loglik"] > lines[0]["loglik"]          # the sampler makes progress
    m = _model(out)
    V = len(m["vocab"])
    assert m["nwk"].shape == (V, 6) and m["phi"].shape == (6, V)
    assert m["nk"].sum() == s["tokens"] == m["nwk"].sum() and (m["nwk"] >= 0).all()
    assert np.allclose(m["phi"].sum(1), 1, atol=1e-4)
    assert np.allclose(m["theta"].sum(1), 1, atol=1e-4) and m["theta"].shape[1] == 6
    topics = (out / "topics.txt").read_text().splitlines()
    assert len(topics) == 6 and all(len(t.split(":")[1].split()) == 20 for t in topics)


@pytest.mark.parametrize("sampler,n", [("alias", 3), ("sparse", 3), ("alias", 4), ("auto", 3)])
def test_s0_equals_serial_simulation(tmp_path, warm_kernels, sampler, n):
    from jobs.data.corpus import synthetic_corpus
    from jobs.lda import simulate_bsp
    out = tmp_path / "out"
    cp = run_job("jobs.lda", n, SMALL + ["--iterations", "3", "--seed", "5", "--sampler", sampler,
                          "--staleness", "0", "--servers", "1", "--out", out])
    assert cp.returncode == 0, cp.stderr
    m = _model(out)
    corpus, _, _ = synthetic_corpus(n_docs=150, seed=6)
    nwk, nk, z = simulate_bsp(corpus, n - 1, 6, 3, sampler=sampler, seed=5)
    assert np.array_equal(m["nwk"], nwk)
    assert np.array_equal(m["nk"], nk)
    assert np.array_equal(m["z"], z)


def test_auto_sampler_by_number_of_topics():
    from kernels import lda as L
    from jobs.data.corpus import synthetic_corpus
    from jobs.lda import LdaWorker, simulate_bsp
    assert L.auto_sampler(100) == L.auto_sampler(L.DENSE_MAX_K) == "dense"
    assert L.auto_sampler(L.DENSE_MAX_K + 1) == L.auto_sampler(1000) == "alias"
    for K, expect in ((6, "dense"), (L.DENSE_MAX_K + 1, "alias")):
        wk = LdaWorker(np.array([0, 2]), np.array([0, 1]), 2, K, 0, 0, 0.1, 0.01, "auto", 2, 2)
        assert wk.sampler == expect
    corpus, _, _ = synthetic_corpus(n_docs=40, seed=3)
    runs = [simulate_bsp(corpus, 2, 6, 2, sampler=s, seed=1) for s in ("auto", "dense", "sparse")]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not np.array_equal(runs[0][2], runs[2][2])


def test_s0_run_is_reproducible_and_seed_matters(tmp_path, warm_kernels):
    runs = []
    for i, seed in enumerate((1, 1, 2)):
        out = tmp_path / f"o{i}"
        cp = run_job("jobs.lda", 3, SMALL + ["--iterations", "2", "--seed", seed, "--out", out])
        assert cp.returncode == 0, cp.stderr
        runs.append(_model(out)["z"])
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_staleness_inf_and_two_servers(tmp_path, warm_kernels):
    out = tmp_path / "out"
    cp = run_job("jobs.lda", 4, SMALL + ["--iterations", "4", "--staleness", "inf", "--servers", "2",
                          "--out", out])
    assert cp.returncode == 0, cp.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["staleness"] == "inf" and s["servers"] == 2 and s["workers"] == 2
    m = _model(out)
    assert m["nk"].sum() == s["tokens"] and (m["nwk"] >= 0).all()
    assert np.array_equal(m["nwk"].sum(0), m["nk"])


def test_uci_input_and_vocabulary(tmp_path, warm_kernels):
    docword = tmp_path / "docword.tiny.txt"
    vocab = tmp_path / "vocab.tiny.txt"
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rows = []
    for d in range(1, 41):
        for w in rng.choice(8, size=4, replace=False):
            rows.append(f"{d} {w + 1} {rng.integers(1, 4)}")
    docword.write_text(f"40\n8\n{len(rows)}\n" + "\n".join(rows) + "\n")
    vocab.write_text("\n".join(words) + "\n")
    out = tmp_path / "out"
    cp = run_job("jobs.lda", 3, ["--data", docword, "--vocab", vocab, "-K", "3", "--iterations", "3",
                  "--sampler", "sparse", "--out", out])
    assert cp.returncode == 0, cp.stderr
    text = (out / "topics.txt").read_text()
    assert "gamma" in text and "w3" not in text
    assert [v.decode() if isinstance(v, bytes) else v for v in _model(out)["vocab"]] == words


@pytest.mark.parametrize("body,needle", [
    ("3\n4\n2\n1 1 2\n1 2 0\n", "docword.bad.txt:5:"),
    ("3\n4\n2\n1 1 2\n1 9 1\n", "docword.bad.txt:5:"),
    ("3\n4\n3\n1 1 2\n1 2 1\n", "docword.bad.txt:3:"),
])
def test_bad_input_fails_cleanly_on_every_rank(tmp_path, warm_kernels, body, needle):
    bad = tmp_path / "docword.bad.txt"
    bad.write_text(body)
    out = tmp_path / "out"
    cp = run_job("jobs.lda", 3, ["--data", bad, "--out", out], timeout=120)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert cp.stderr.count(needle) == 1, cp.stderr       # one message, not one per rank
    assert not out.exists() and not list(tmp_path.glob("out.partial*"))


def test_bad_option_fails_cleanly(tmp_path, warm_kernels):
    cp = run_job("jobs.lda", 3, ["--topics", "0", "--out", tmp_path / "o"], timeout=120)
    assert cp.returncode == 2 and "--topics" in cp.stderr, cp.stderr


@pytest.mark.parametrize("resume_ranks,resume_servers", [(3, "1"), (4, "2")])
def test_checkpoint_resume_equals_uninterrupted(tmp_path, warm_kernels, resume_ranks,
                                                resume_servers):
    """Also onto 2 servers (tables resharded): identical counts."""
    full = tmp_path / "full"
    cp = run_job("jobs.lda", 3, SMALL + ["--iterations", "6", "--seed", "3", "--out", full])
    assert cp.returncode == 0, cp.stderr
    ck = tmp_path / "ck"
    first = tmp_path / "first"
    cp = run_job("jobs.lda", 3, SMALL + ["--iterations", "6", "--seed", "3", "--checkpoint-dir", ck,
                          "--checkpoint-every", "3", "--out", first])
    assert cp.returncode == 0, cp.stderr
    # keep only the clock-3 checkpoint, then resume from it
    cks = sorted(p for p in ck.iterdir() if p.is_dir())
    assert cks, list(ck.iterdir())
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.lda", resume_ranks, SMALL + ["--iterations", "6", "--seed", "3", "--resume", cks[0],
                                     "--out", resumed, "--servers", resume_servers])
    assert cp.returncode == 0, cp.stderr
    a, b = _model(full), _model(resumed)
    assert np.array_equal(a["nwk"], b["nwk"]) and np.array_equal(a["z"], b["z"])
    sa = json.loads((full / "summary.json").read_text())
    sb = json.loads((resumed / "summary.json").read_text())
    assert sa["loglik"] == sb["loglik"]


@pytest.mark.parametrize("before,after", [(4, 3), (3, 5)])
def test_resume_onto_another_worker_count(tmp_path, warm_kernels, before, after):
    """Documents are repartitioned with their topic assignments: the
    word-topic table restored from the checkpoint stays consistent with the
    moved assignments, and the run completes every iteration."""
    opts = SMALL + ["--seed", "3", "--servers", "1"]
    ck = tmp_path / "ck"
    first = run_job("jobs.lda", before, opts + ["--iterations", "4", "--checkpoint-dir", ck,
                                 "--checkpoint-every", "3", "--out", tmp_path / "first"])
    assert first.returncode == 0, first.stderr
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.lda", after, opts + ["--iterations", "8", "--checkpoint-dir", ck, "--resume",
                             "--out", resumed])
    assert cp.returncode == 0, cp.stderr
    m = _model(resumed)
    s = json.loads((resumed / "summary.json").read_text())
    assert s["workers"] == after - 1 and s["iterations"] == 8
    assert "iteration 1/8" not in cp.stdout and "iteration 8/8" in cp.stdout
    # counts and assignments agree: nwk is exactly what z implies
    K = m["nwk"].shape[1]
    assert m["nwk"].sum() == m["z"].size and m["nwk"].min() >= 0
    assert np.array_equal(np.bincount(m["z"], minlength=K), m["nwk"].sum(axis=0))
