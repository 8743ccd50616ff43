"""jobs.mf end to end under mpiexec (through ssp_mpi.launch, with timeouts)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from jobrun import read_model as _model
from jobrun import read_summary as _summary
from jobrun import run_job
from ssp_mpi.launch import REPO, rank_env

pytestmark = pytest.mark.mpi

NOISE = 0.25            # --synthetic-noise default: the best reachable test RMSE
TOLERANCE = 1.2         # planted data: test RMSE within 20 % of the noise level


def test_help_lists_every_option_with_default():
    cp = subprocess.run([sys.executable, "-m", "jobs.mf", "--help"], cwd=REPO, env=rank_env(),
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    text = " ".join(cp.stdout.split())
    for opt in ("--data", "--format", "--test", "--test-fraction", "--rank", "--epochs", "--lr",
                "--reg", "--staleness", "--servers", "--seed", "--out", "--clocks-per-epoch",
                "--adagrad", "--no-bias", "--user-table", "--lr-power", "--synthetic-noise",
                "--eval-seconds", "--stop-when"):
        assert opt in text, opt
    for default in ("(default: 16)", "(default: 20)", "(default: 0.05)", "(default: 0.1)",
                    "(default: auto)", "(default: own)", "(default: 0.0)"):
        assert default in text, default


def test_default_run_writes_every_output(tmp_path, warm_kernels):
    out = tmp_path / "out"
    cp = run_job("jobs.mf", 3, ["--epochs", "3", "--out", out])
    assert cp.returncode == 0, cp.stderr
    for e in (1, 2, 3):                                # one progress line per epoch, one rank
        assert cp.stdout.count(f"epoch {e}/3:") == 1, cp.stdout
    s = _summary(out)
    for key in ("train_rmse", "test_rmse", "epochs", "rank", "staleness", "workers", "servers",
                "wall_s", "compute_s", "comm_s", "wait_s", "ratings_per_s",
                "ratings_per_s_per_worker", "config"):
        assert key in s, key
    assert s["workers"] == 2 and s["servers"] == 1 and s["epochs"] == 3 and s["rank"] == 16
    assert s["config"]["lr"] == 0.05 and s["staleness"] == 0
    assert s["n_train"] == 90_000 and s["n_test"] == 10_000
    assert s["ratings_per_s"] > 0 and s["compute_s"] > 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert lines[-1]["final"] and lines[-1]["test_rmse"] == pytest.approx(s["test_rmse"])
    assert lines[-1]["train_rmse"] < lines[0]["train_rmse"]
    assert all(len(r["compute_s"]) == 2 and len(r["wait_s"]) == 2 for r in lines)
    m = _model(out)
    assert m["P"].shape == (1000, 16) and m["Q"].shape == (500, 16)
    assert m["bu"].shape == (1000,) and m["bi"].shape == (500,)
    assert np.array_equal(m["user_ids"], np.arange(1000))
    assert m["attrs"]["global_mean"] == pytest.approx(s["global_mean"])


def _serial(args_opts, n_workers, test_fraction=0.1):
    from jobs import mf as J
    p = J.build_parser()
    args = p.parse_args([str(a) for a in args_opts])
    train, test, _ = J.load_data(args)
    return J.simulate_bsp(train, test, n_workers, J.job_options(args, train))


@pytest.mark.parametrize("n,extra,rtol", [
    (3, [], 2e-4),
    (4, ["--clocks-per-epoch", "2", "--user-table"], 2e-4),
    (4, ["--dtype", "float64", "--adagrad", "--servers", "2"], 1e-9),
])
def test_s0_equals_serial_simulation(tmp_path, warm_kernels, n, extra, rtol):
    opts = ["--synthetic-users", "300", "--synthetic-items", "200", "--synthetic-ratings",
            "12000", "--rank", "6", "--epochs", "4", "--seed", "7"] + extra
    out = tmp_path / "out"
    cp = run_job("jobs.mf", n, opts + ["--staleness", "0", "--out", out])
    assert cp.returncode == 0, cp.stderr
    m = _model(out)
    servers = 2 if "--servers" in extra else 1
    P, Q, bu, bi = _serial(opts, n - servers)
    for name, want in (("P", P), ("Q", Q), ("bu", bu), ("bi", bi)):
        np.testing.assert_allclose(m[name], want, rtol=rtol, atol=rtol * 1e-2, err_msg=name)
    # the comparison has teeth: one worker fewer is a different schedule
    P1, Q1, _, _ = _serial(opts, n - servers - 1) if n - servers > 1 else _serial(opts, 2)
    assert not np.allclose(m["Q"], Q1, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("staleness", ["0", "2", "inf"])
def test_planted_data_reaches_noise_level(tmp_path, warm_kernels, workers, staleness):
    out = tmp_path / "out"
    cp = run_job("jobs.mf", workers + 1, ["--rank", "8", "--reg", "0.02", "--epochs", "20",
                            "--staleness", staleness, "--out", out])
    assert cp.returncode == 0, cp.stderr
    s = _summary(out)
    assert s["workers"] == workers and str(s["staleness"]) == staleness
    assert s["synthetic_noise"] == NOISE
    assert s["test_rmse"] < TOLERANCE * NOISE, s["test_rmse"]
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["test_rmse"] > 1.5 * NOISE            # it did learn during the run


def test_test_file_with_unknown_ids_and_matrixmarket(tmp_path, warm_kernels):
    rng = np.random.default_rng(0)
    cells = rng.choice(60 * 40, 1500, replace=False)
    u, i = cells // 40 + 1, cells % 40 + 1
    r = rng.integers(1, 6, 1500)
    train = tmp_path / "train.mtx"
    train.write_text("%%MatrixMarket matrix coordinate real general\n60 40 1400\n"
                     + "".join(f"{a} {b} {c}\n" for a, b, c in zip(u[:1400], i[:1400], r[:1400])))
    test = tmp_path / "test.mtx"
    test.write_text("%%MatrixMarket matrix coordinate real general\n99 40 101\n"
                    + "".join(f"{a} {b} {c}\n" for a, b, c in zip(u[1400:], i[1400:], r[1400:]))
                    + "99 1 3\n")
    out = tmp_path / "out"
    cp = run_job("jobs.mf", 3, ["--data", train, "--test", test, "--rank", "4", "--epochs", "3",
                  "--out", out])
    assert cp.returncode == 0, cp.stderr
    s = _summary(out)
    assert s["format"] == "mm" and s["n_train"] == 1400
    assert s["test_dropped_unknown_ids"] >= 1
    assert s["n_test"] == 101 - s["test_dropped_unknown_ids"]
    m = _model(out)
    assert set(m["user_ids"].tolist()) == set(u[:1400].tolist())


BAD = [
    ("ratings.dat", "1::2::5\n1::3::x\n", [], "ratings.dat:2:", "not a number"),
    ("ratings.dat", "1::2::5\n1::3::nan\n", [], "ratings.dat:2:", "finite"),
    ("u.data", "1\t2\t5\t0\n-1\t3\t4\t0\n", [], "u.data:2:", "negative"),
    ("empty.txt", "", [], "empty.txt:1:", "empty"),
    ("m.mtx", "%%MatrixMarket matrix array real general\n2 2\n", [], "m.mtx:1:", "coordinate"),
    ("r.txt", "1 2 3\n", ["--format", "parquet"], "--format", "invalid choice"),
]


@pytest.mark.parametrize("name,body,extra,needle,words", BAD, ids=[b[3] for b in BAD])
def test_bad_input_fails_cleanly_on_every_rank(tmp_path, warm_kernels, name, body, extra,
                                               needle, words):
    bad = tmp_path / name
    bad.write_text(body)
    out = tmp_path / "out"
    cp = run_job("jobs.mf", 3, ["--data", bad, "--out", out] + extra, timeout=120)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert cp.stderr.count(needle) == 1, cp.stderr      # one message, not one per rank
    assert words in cp.stderr, cp.stderr
    assert not out.exists() and not list(tmp_path.glob("out.partial*"))


def test_bad_option_fails_cleanly(tmp_path, warm_kernels):
    cp = run_job("jobs.mf", 3, ["--rank", "0", "--out", tmp_path / "o"], timeout=120)
    assert cp.returncode == 2 and "--rank" in cp.stderr, cp.stderr
    cp = run_job("jobs.mf", 3, ["--test-fraction", "1.5", "--out", tmp_path / "o"], timeout=120)
    assert cp.returncode == 2 and "--test-fraction" in cp.stderr, cp.stderr


@pytest.mark.parametrize("resume_ranks,resume_servers", [(3, "1"), (4, "2")])
def test_checkpoint_resume_equals_uninterrupted(tmp_path, warm_kernels, resume_ranks,
                                                resume_servers):
    """Also onto 2 servers (tables resharded): same result to rounding."""
    opts = ["--synthetic-users", "300", "--synthetic-items", "200", "--synthetic-ratings",
            "12000", "--rank", "6", "--epochs", "4", "--seed", "3", "--dtype", "float64"]
    full = tmp_path / "full"
    cp = run_job("jobs.mf", 3, opts + ["--out", full])
    assert cp.returncode == 0, cp.stderr
    ck = tmp_path / "ck"
    first = tmp_path / "first"
    cp = run_job("jobs.mf", 3, opts + ["--checkpoint-dir", ck, "--checkpoint-every", "6", "--out", first])
    assert cp.returncode == 0, cp.stderr
    cks = sorted(p for p in ck.iterdir() if p.is_dir())
    assert cks, list(ck.iterdir())
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.mf", resume_ranks, opts + ["--resume", cks[0], "--out", resumed,
                                    "--servers", resume_servers])
    assert cp.returncode == 0, cp.stderr
    a, b = _model(full), _model(resumed)
    for name in ("P", "Q", "bu", "bi"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)
    sa, sb = _summary(full), _summary(resumed)
    assert sa["test_rmse"] == pytest.approx(sb["test_rmse"], rel=1e-9)
    # the resumed run started at the checkpoint, not from scratch
    assert "epoch 1/4" not in cp.stdout and "epoch 4/4" in cp.stdout


def _rank_pids(root):
    """PIDs of the Python ranks started under process ``root`` (descendants
    whose command line runs jobs.mf, not the launcher or hydra's proxy)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True,
                         timeout=30).stdout
    parent, args = {}, {}
    for line in out.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) == 3:
            parent[int(parts[0])], args[int(parts[0])] = int(parts[1]), parts[2]
    pids = []
    for pid, a in args.items():
        p, seen = pid, 0
        while p in parent and p != root and seen < 50:
            p, seen = parent[p], seen + 1
        if p == root and "-m jobs.mf" in a and "mpiexec" not in a and "proxy" not in a:
            pids.append(pid)
    return sorted(pids)


def test_signal_checkpoints_exits_75_and_resume_matches(tmp_path, warm_kernels):
    import os
    import signal
    import time
    from ssp_mpi.launch import finish, start
    opts = ["--synthetic-users", "300", "--synthetic-items", "200", "--synthetic-ratings",
            "12000", "--rank", "6", "--seed", "4", "--dtype", "float64", "--eval-every", "0"]
    opts = [str(o) for o in opts]
    ck, out = tmp_path / "ck", tmp_path / "out"
    proc = start(3, ["-m", "jobs.mf", *opts, "--epochs", "100000", "--checkpoint-dir", ck,
                     "--checkpoint-every", "40", "--out", out])
    try:
        end = time.monotonic() + 180
        while time.monotonic() < end and not (ck.exists() and any(ck.glob("ckpt-*"))):
            time.sleep(0.2)
        assert ck.exists() and any(ck.glob("ckpt-*")), "no checkpoint appeared"
        pids = _rank_pids(proc.pid)
        assert len(pids) == 3, pids
        os.kill(pids[-1], signal.SIGUSR1)
        cp = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert cp.returncode == 75, (cp.returncode, cp.stdout[-2000:], cp.stderr[-2000:])
    assert cp.stdout.count("stopped at clock") == 1, cp.stdout[-2000:]
    assert not out.exists()
    stopped = int(cp.stdout.split("stopped at clock")[1].split()[0])
    epochs = stopped // 4 + 2              # finish shortly after the stop
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.mf", 3, opts + ["--epochs", epochs, "--checkpoint-dir", ck, "--resume",
                         "--out", resumed])
    assert cp.returncode == 0, cp.stderr
    straight = tmp_path / "straight"
    cp = run_job("jobs.mf", 3, opts + ["--epochs", epochs, "--out", straight])
    assert cp.returncode == 0, cp.stderr
    a, b = _model(straight), _model(resumed)
    for name in ("P", "Q", "bu", "bi"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-8, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("before,after", [(4, 3), (3, 5)])
def test_resume_onto_another_worker_count(tmp_path, warm_kernels, before, after):
    """3 workers -> 2 and 2 -> 4 (1 server): users are repartitioned with their
    factors (the first evaluation after resuming equals the last one before),
    and the run finishes all epochs and reaches the noise level."""
    opts = ["--epochs", "10", "--seed", "3", "--servers", "1"]
    ck = tmp_path / "ck"
    first = run_job("jobs.mf", before, opts + ["--epochs", "5", "--checkpoint-dir", ck,
                                 "--checkpoint-every", "20", "--out", tmp_path / "first"])
    assert first.returncode == 0, first.stderr
    resumed = tmp_path / "resumed"
    cp = run_job("jobs.mf", after, opts + ["--checkpoint-dir", ck, "--resume", "--out", resumed])
    assert cp.returncode == 0, cp.stderr
    assert "epoch 1/10" not in cp.stdout and "epoch 10/10" in cp.stdout
    before_line = next(l for l in first.stdout.splitlines() if l.startswith("epoch 5/5"))
    after_line = next(l for l in cp.stdout.splitlines() if l.startswith("epoch 5/10"))
    assert before_line.split(":")[1].split(";")[0].split("(")[0].strip() == \
        after_line.split(":")[1].split(";")[0].split("(")[0].strip()
    s = _summary(resumed)
    assert s["workers"] == after - 1 and s["epochs"] == 10
    assert s["test_rmse"] < 1.2 * s["synthetic_noise"], s


def _timed(path):
    return [json.loads(x) for x in (path / "metrics_timed.jsonl").read_text().splitlines()]


def test_stop_when_slowest_fast_worker_keeps_training(tmp_path, warm_kernels):
    """--stop-when slowest at s=inf with worker 1 slowed 3x: the straggler does
    exactly --epochs, the fast worker more; --eval-seconds writes the test RMSE
    of the current model against time."""
    opts = ["--synthetic-ratings", "300000", "--rank", "8", "--epochs", "8", "--seed", "2",
            "--straggle", "1:3", "--eval-every", "0", "--eval-seconds", "0.01"]
    out = tmp_path / "inf"
    cp = run_job("jobs.mf", 3, opts + ["--staleness", "inf", "--stop-when", "slowest", "--out", out])
    assert cp.returncode == 0, cp.stderr
    s = _summary(out)
    fast, slow = s["epochs_per_worker"]
    assert slow == 8.0 and fast > 8.5, s["epochs_per_worker"]
    assert s["ratings_processed"] > s["n_train"] * 8            # more than --epochs' worth
    assert s["config"]["stop_when"] == "slowest"
    recs = _timed(out)
    assert len(recs) >= 3, recs
    times = [r["elapsed_s"] for r in recs]
    assert times == sorted(times) and [r["point"] for r in recs] == sorted(r["point"] for r in recs)
    assert all(len(r["epochs"]) == 2 and r["elapsed_spread_s"] >= 0 for r in recs)
    assert recs[-1]["test_rmse"] < recs[0]["test_rmse"]         # it learns against time
    assert recs[-1]["epochs"][0] > recs[-1]["epochs"][1]        # the fast worker is ahead
    assert s["test_rmse"] < TOLERANCE * NOISE
    # the same at --stop-when own: both workers stop at --epochs
    own = tmp_path / "own"
    cp = run_job("jobs.mf", 3, opts + ["--staleness", "inf", "--out", own])
    assert cp.returncode == 0, cp.stderr
    assert _summary(own)["epochs_per_worker"] == [8.0, 8.0]
    assert _summary(own)["ratings_processed"] == _summary(own)["n_train"] * 8


def test_stop_when_slowest_is_bounded_by_staleness_and_equal_at_s0(tmp_path, warm_kernels):
    """At finite s the fast worker leads by at most s clocks; at s=0 --stop-when
    slowest is the BSP schedule itself (the same model as --stop-when own)."""
    opts = ["--synthetic-users", "300", "--synthetic-items", "200", "--synthetic-ratings",
            "40000", "--rank", "6", "--epochs", "3", "--seed", "5", "--dtype", "float64",
            "--straggle", "1:3", "--eval-every", "0"]
    s2 = tmp_path / "s2"
    cp = run_job("jobs.mf", 3, opts + ["--staleness", "2", "--stop-when", "slowest", "--out", s2])
    assert cp.returncode == 0, cp.stderr
    clocks = _summary(s2)["clocks_per_worker"]
    assert clocks[1] == 12 and 12 <= clocks[0] <= 14, clocks
    a, b = tmp_path / "own0", tmp_path / "slow0"
    for path, mode in ((a, "own"), (b, "slowest")):
        cp = run_job("jobs.mf", 3, opts + ["--staleness", "0", "--stop-when", mode, "--out", path])
        assert cp.returncode == 0, cp.stderr
    assert _summary(b)["clocks_per_worker"] == [12, 12]
    ma, mb = _model(a), _model(b)
    for name in ("P", "Q", "bu", "bi"):
        np.testing.assert_array_equal(ma[name], mb[name], err_msg=name)
    assert not (b / "metrics_timed.jsonl").exists()              # --eval-seconds 0: off
