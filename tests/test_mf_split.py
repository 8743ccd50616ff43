"""jobs.mf --split ratings (Bosen's / the SSP paper's setting): the share rule,
convergence on planted data, staleness 0 against the serial simulation,
checkpoint/resume, and the refused resume across splits.  The multi-rank
tests launch jobs.mf through ssp_mpi.launch (with timeouts)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from jobrun import read_model as _model
from jobrun import read_summary as _summary
from jobrun import run_job
from ssp_mpi.launch import REPO, rank_env

NOISE = 0.25            # --synthetic-noise default: the best reachable test RMSE
TOLERANCE = 1.2         # as tests/test_job_mf.py: within 20 % of the noise level
SMALL = ["--synthetic-users", "300", "--synthetic-items", "200", "--synthetic-ratings",
         "12000", "--rank", "6", "--epochs", "4"]


def _data(opts):
    from jobs import mf as J
    args = J.build_parser().parse_args([str(a) for a in opts])
    train, test, _ = J.load_data(args)
    return J, args, train, test


# --------------------------------------------------------------------------- no MPI
def test_rating_shares_are_balanced_disjoint_and_ignore_the_user():
    J, args, train, test = _data(["--split", "ratings", "--seed", "5"])
    opts = J.job_options(args, train)
    assert opts["split"] == "ratings" and opts["user_table"]      # implied
    for n in (2, 3):
        shares = [J.worker_share(train, test, "ratings", w, n, 5) for w in range(n)]
        for part in (0, 1):
            idx = [s[part] for s in shares]
            total = len(train) if part == 0 else len(test)
            assert max(map(len, idx)) - min(map(len, idx)) <= 1
            allidx = np.concatenate(idx)
            assert len(allidx) == total and np.array_equal(np.sort(allidx), np.arange(total))
        # not by user: most users' ratings are on every worker
        users = [set(train.users[s[0]].tolist()) for s in shares]
        assert len(set.intersection(*users)) > 0.9 * train.n_users
        # the L2 ranges still cover every user once
        assert shares[0][2] == 0 and shares[-1][3] == train.n_users
        assert all(shares[w][3] == shares[w + 1][2] for w in range(n - 1))
        # deterministic, and the seed matters
        again = J.worker_share(train, test, "ratings", 1, n, 5)
        assert np.array_equal(again[0], shares[1][0]) and np.array_equal(again[1], shares[1][1])
        other = J.worker_share(train, test, "ratings", 1, n, 6)
        assert not np.array_equal(other[0], shares[1][0])
    # --split users: contiguous user ranges, as before
    lo_hi = J.user_bounds(train.users, train.n_users, 2)
    sel, tsel, lo, hi = J.worker_share(train, test, "users", 1, 2, 5)
    assert (lo, hi) == (lo_hi[1], lo_hi[2])
    assert np.all(train.users[sel] >= lo) and len(sel) == np.sum(train.users >= lo)


def test_serial_simulation_sums_the_increments_of_a_shared_user():
    """At staleness 0 the simulation starts every worker of a clock from the
    same P and adds both workers' increments: with one worker it is plain
    serial SGD, with two the per-user steps of a clock are summed."""
    J, args, train, test = _data(SMALL + ["--split", "ratings", "--dtype", "float64"])
    opts = J.job_options(args, train)
    P1, Q1, _, _ = J.simulate_bsp(train, test, 1, opts)
    P2, Q2, _, _ = J.simulate_bsp(train, test, 2, opts)
    assert not np.allclose(P1, P2, rtol=1e-6)
    # one worker: the same model as --split users with one worker (all ratings)
    Pu, Qu, _, _ = J.simulate_bsp(train, test, 1, dict(opts, split="users"))
    np.testing.assert_allclose(P1, Pu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Q1, Qu, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- under MPI
def test_help_lists_split_with_its_default():
    cp = subprocess.run([sys.executable, "-m", "jobs.mf", "--help"], cwd=REPO, env=rank_env(),
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    text = " ".join(cp.stdout.split())
    assert "--split {users,ratings}" in text
    i = text.rindex("--split {users,ratings}")       # the description, not the usage
    assert "(default: users)" in text[i:i + 600]


@pytest.mark.mpi
@pytest.mark.parametrize("n,extra,rtol", [
    (3, [], 2e-4),
    (4, ["--dtype", "float64", "--adagrad", "--servers", "2"], 1e-9),
    (4, ["--dtype", "float64", "--clocks-per-epoch", "2"], 1e-9),
])
def test_split_ratings_s0_equals_serial_simulation(tmp_path, warm_kernels, n, extra, rtol):
    opts = SMALL + ["--seed", "7", "--split", "ratings"] + extra
    out = tmp_path / "out"
    cp = run_job("jobs.mf", n, opts + ["--staleness", "0", "--out", out])
    assert cp.returncode == 0, cp.stderr
    m = _model(out)
    J, args, train, test = _data(opts)
    servers = 2 if "--servers" in extra else 1
    opt = J.job_options(args, train)
    P, Q, bu, bi = J.simulate_bsp(train, test, n - servers, opt)
    for name, want in (("P", P), ("Q", Q), ("bu", bu), ("bi", bi)):
        np.testing.assert_allclose(m[name], want, rtol=rtol, atol=rtol * 1e-2, err_msg=name)
    # the comparison has teeth: the user split is a different schedule
    Pu, Qu, _, _ = J.simulate_bsp(train, test, n - servers, dict(opt, split="users"))
    assert not np.allclose(m["P"], Pu, rtol=rtol, atol=rtol * 1e-2)
    s = _summary(out)
    assert s["config"]["split"] == "ratings" and s["config"]["user_table"] is True


@pytest.mark.mpi
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("staleness", ["0", "inf"])
def test_split_ratings_reaches_noise_level(tmp_path, warm_kernels, workers, staleness):
    out = tmp_path / "out"
    cp = run_job("jobs.mf", workers + 1, ["--split", "ratings", "--rank", "8", "--reg", "0.02",
                            "--epochs", "20", "--staleness", staleness, "--out", out])
    assert cp.returncode == 0, cp.stderr
    s = _summary(out)
    assert s["workers"] == workers and str(s["staleness"]) == staleness
    assert s["n_test"] == 10_000 and s["n_train"] == 90_000     # every test rating evaluated
    assert s["test_rmse"] < TOLERANCE * NOISE, s["test_rmse"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["test_rmse"] > 1.5 * NOISE                  # it did learn during the run
    # the final model file gives the reported test RMSE
    J, args, train, test = _data(["--split", "ratings"])
    m = _model(out)
    mu = s["global_mean"]
    pred = mu + m["bu"][test.users] + m["bi"][test.items] + np.einsum(
        "ij,ij->i", m["P"][test.users], m["Q"][test.items])
    rmse = float(np.sqrt(np.mean((pred - test.values) ** 2)))
    assert rmse == pytest.approx(s["test_rmse"], rel=1e-4)


@pytest.mark.mpi
@pytest.mark.parametrize("resume_ranks", [3, 4])
def test_split_ratings_checkpoint_resume(tmp_path, warm_kernels, resume_ranks):
    """Same worker count: the uninterrupted model to rounding.  Another count
    (2 -> 3 workers): the ratings are dealt afresh, the run finishes and the
    first evaluation after resuming equals the last one before."""
    opts = SMALL + ["--seed", "3", "--dtype", "float64", "--split", "ratings", "--adagrad"]
    ck = tmp_path / "ck"
    first = tmp_path / "first"
    cp = run_job("jobs.mf", 3, opts + ["--checkpoint-dir", ck, "--checkpoint-every", "8", "--out", first])
    assert cp.returncode == 0, cp.stderr
    before = next(l for l in cp.stdout.splitlines() if l.startswith("epoch 2/4"))
    cks = sorted(p for p in ck.iterdir() if p.is_dir() and p.name.startswith("ckpt-"))
    assert cks, list(ck.iterdir())
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.mf", resume_ranks, opts + ["--resume", cks[0], "--out", resumed])
    assert cp.returncode == 0, cp.stderr
    assert "epoch 1/4" not in cp.stdout and "epoch 4/4" in cp.stdout
    after = next(l for l in cp.stdout.splitlines() if l.startswith("epoch 2/4"))
    assert before.split(";")[0] == after.split(";")[0]
    a, b = _model(first), _model(resumed)
    if resume_ranks == 3:
        for name in ("P", "Q", "bu", "bi"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)
    else:
        s = _summary(resumed)
        assert s["workers"] == 3 and s["n_test"] == _summary(first)["n_test"]
        assert s["test_rmse"] < _summary(first)["test_rmse"] * 1.1


@pytest.mark.mpi
@pytest.mark.parametrize("first,then", [("users", "ratings"), ("ratings", "users")])
def test_resume_with_another_split_is_refused(tmp_path, warm_kernels, first, then):
    opts = SMALL + ["--seed", "3", "--epochs", "2"]
    ck = tmp_path / "ck"
    cp = run_job("jobs.mf", 3, opts + ["--split", first, "--checkpoint-dir", ck, "--checkpoint-every", "4",
                         "--out", tmp_path / "a"])
    assert cp.returncode == 0, cp.stderr
    out = tmp_path / "b"
    cp = run_job("jobs.mf", 3, opts + ["--split", then, "--checkpoint-dir", ck, "--resume", "--out", out],
              timeout=120)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert cp.stderr.count(f"--split {first}") >= 1 and "resume with" in cp.stderr, cp.stderr
    assert cp.stderr.count("ssp-mpi: error") == 1, cp.stderr       # one message
    assert not out.exists()


@pytest.mark.parametrize("split", ["users", "ratings"])
@pytest.mark.parametrize("workers", [2, 3])
def test_noise_free_replay_at_s0_is_the_serial_simulation(split, workers):
    """benchmarks.mf_staleness.simulate (the --ideal replay) at s=0 with a
    straggler runs the BSP schedule: its final model is simulate_bsp's."""
    from benchmarks import mf_staleness as B
    args = B.parse(["--users", "200", "--items", "80", "--ratings", "5000", "--epochs", "2",
                    "--rank", "4", "--split", split, "--workers", str(workers)])
    curve = B.simulate(args, "0")
    assert curve[-1][1] == curve[-1][2] == 2.0
    J, jargs, train, test = _data(B.job_argv(args, "0", "unused"))
    opts = J.job_options(jargs, train)
    assert opts["user_table"] == (split == "ratings")
    P, Q, bu, bi = J.simulate_bsp(train, test, workers, opts)
    W = [J.make_worker(train, test, opts, w, workers) for w in range(workers)]
    sse = sum(w.test_error(P, Q, bu, bi)[0] for w in W)
    assert sum(len(w.tr) for w in W) == len(test)
    assert curve[-1][3] == pytest.approx(np.sqrt(sse / len(test)), rel=1e-5)
    # and at s=inf the fast worker ran ahead
    ahead = B.simulate(args, "inf")
    assert ahead[-1][2] > ahead[-1][1] == 2.0
