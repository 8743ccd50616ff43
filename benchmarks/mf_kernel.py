"""Single-core MF-SGD throughput and quality: kernels.mf against libmf and cornac.

    python -m benchmarks.mf_kernel                       # 9M ratings, 100k x 20k, ranks 32, 100
    python -m benchmarks.mf_kernel --ratings 1000000 --users 20000 --items 5000 --ranks 32
    python -m benchmarks.mf_kernel --quality-only        # test RMSE, rank 16, 20 epochs

Throughput (ratings per second per core) is measured on one synthetic set
(``jobs.data.ratings.synthetic_ratings``: uniform (user, item) cells, planted
rank-r signal + noise), every engine single-threaded, in one run:

* ``numba-sgd``: ``kernels.mf.sgd_epoch`` (biases on, Q delta buffer written,
  as the job runs it) on ratings laid out once by ``kernels.mf.block_order``
  (item strips sized to L2, users ascending inside a strip), factor and
  delta arrays 64-byte aligned (``kernels.mf.init_factors``/``aligned_zeros``);
* ``numba-adagrad``: ``kernels.mf.adagrad_epoch`` (row-wise AdaGrad, the
  update libmf uses), same layout;
* ``numba-unordered``: ``numba-sgd`` on the ratings in random order (what a
  naive loop sees: cache misses on every row);
* ``libmf``: the PyPI ``libmf`` build (scalar code, no SSE/AVX flags), called
  through ctypes on ``mf_train`` (``nr_threads=1``);
* ``libmf-avx``: libmf built from the same PyPI sdist with ``-DUSEAVX -mavx
  -O3`` (``--libmf-avx-so`` a built library, or ``--libmf-sdist`` the
  ``libmf-*.tar.gz`` from ``pip download --no-deps --no-binary :all: libmf``,
  compiled here with g++; nothing is downloaded by this script);
* ``cornac``: ``cornac.models.mf.backend_cpu.fit_sgd`` (cornac's MF SGD loop,
  ``num_threads=1``, biases on) on the ratings in random order, given
  64-byte-aligned factor arrays like ours;
* ``reference``: ``kernels.mf_reference.sgd_epoch`` (NumPy) on a small subset.

Each figure is ratings x epochs / CPU seconds of the training loop only
(``time.process_time``: the machine may be shared; wall seconds are shown
too), best of ``--rounds`` rounds in which the engines take turns.  libmf and cornac are timed as t(1 + E epochs) - t(1 epoch), which
removes their set-up (libmf's grid/shuffle, its first "slow" epoch); our
layout step is timed separately (``layout_s``), once per data set.

Quality (``--quality``; benchmark 4 of issue 3): test RMSE at rank 16 after
20 epochs, on one seeded 90/10 split, for our SGD kernel, libmf (its default
parameters) and cornac's MF (its defaults).  Data: the real MovieLens 100k
ratings shipped inside the PyPI package ``recbole``
(``recbole/dataset_example/ml-100k/ml-100k.inter``; install it with
``pip install --no-deps recbole``, only the data file is read), else the
synthetic set (stated in the output).
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from jobs.data.ratings import read_ratings, synthetic_ratings, train_test_split  # noqa: E402
from kernels import mf as K  # noqa: E402
from kernels import mf_reference as KR  # noqa: E402

ENGINES = ("numba-sgd", "numba-adagrad", "numba-unordered", "libmf", "libmf-avx",
           "cornac", "reference")


# ------------------------------------------------------------------ libmf via ctypes
class _Node(ctypes.Structure):
    _fields_ = [("u", ctypes.c_int), ("v", ctypes.c_int), ("r", ctypes.c_float)]


class _Problem(ctypes.Structure):
    _fields_ = [("m", ctypes.c_int), ("n", ctypes.c_int), ("nnz", ctypes.c_longlong),
                ("R", ctypes.c_void_p)]


class _Param(ctypes.Structure):
    _fields_ = [("fun", ctypes.c_int), ("k", ctypes.c_int), ("nr_threads", ctypes.c_int),
                ("nr_bins", ctypes.c_int), ("nr_iters", ctypes.c_int),
                ("lambda_p1", ctypes.c_float), ("lambda_p2", ctypes.c_float),
                ("lambda_q1", ctypes.c_float), ("lambda_q2", ctypes.c_float),
                ("eta", ctypes.c_float), ("do_nmf", ctypes.c_bool), ("quiet", ctypes.c_bool),
                ("copy_data", ctypes.c_bool)]


class _Model(ctypes.Structure):
    _fields_ = [("fun", ctypes.c_int), ("m", ctypes.c_int), ("n", ctypes.c_int),
                ("k", ctypes.c_int), ("b", ctypes.c_float),
                ("P", ctypes.POINTER(ctypes.c_float)), ("Q", ctypes.POINTER(ctypes.c_float))]


class LibMF:
    """Minimal ctypes handle on libmf's C API (mf_train, mf_destroy_model)."""

    def __init__(self, so_path):
        self.path = so_path
        self.lib = ctypes.CDLL(so_path)
        self.lib.mf_get_default_param.restype = _Param
        self.lib.mf_train.restype = ctypes.POINTER(_Model)
        self.lib.mf_train.argtypes = [ctypes.POINTER(_Problem), _Param]
        self.lib.mf_destroy_model.argtypes = [ctypes.POINTER(ctypes.POINTER(_Model))]

    def params(self, k, iters, **kw):
        p = self.lib.mf_get_default_param()
        p.k, p.nr_iters, p.nr_threads, p.quiet, p.copy_data = k, iters, 1, True, True
        for name, v in kw.items():
            setattr(p, name, v)
        return p

    def train(self, users, items, values, m, n, param):
        """Returns (seconds of CPU, seconds of wall, P, Q) with P/Q as (m|n, k)."""
        R = np.empty(len(values), dtype=[("u", "<i4"), ("v", "<i4"), ("r", "<f4")])
        R["u"], R["v"], R["r"] = users, items, values
        prob = _Problem(int(m), int(n), len(values), R.ctypes.data)
        c0, w0 = time.process_time(), time.perf_counter()
        model = self.lib.mf_train(ctypes.byref(prob), param)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        mdl = model.contents
        kk = mdl.k  # padded to a multiple of 8 in AVX/SSE builds
        P = np.ctypeslib.as_array(mdl.P, shape=(mdl.m * kk,)).reshape(mdl.m, kk)[:, :param.k].copy()
        Q = np.ctypeslib.as_array(mdl.Q, shape=(mdl.n * kk,)).reshape(mdl.n, kk)[:, :param.k].copy()
        b = float(mdl.b)
        self.lib.mf_destroy_model(ctypes.byref(model))
        return cpu, wall, P, Q, b


def pypi_libmf_so():
    spec = importlib.util.find_spec("libmf")
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [os.path.dirname(spec.origin)])
    for root in roots:
        hits = glob.glob(os.path.join(os.path.dirname(root), "libmf*.so"))
        if hits:
            return hits[0]
    return None


def build_libmf_avx(sdist, out_dir):
    """Compile libmf's sources from its PyPI sdist with the AVX code path."""
    with tarfile.open(sdist) as tf:
        tf.extractall(out_dir, filter="data")
    src = glob.glob(os.path.join(out_dir, "*", "src_cpp"))[0]
    so = os.path.join(out_dir, "libmf_avx.so")
    cmd = ["g++", "-O3", "-std=c++11", "-DNDEBUG", "-DUSEAVX", "-mavx", "-fPIC", "-shared",
           "-pthread", os.path.join(src, "libmf_interface.cpp"), os.path.join(src, "mf.cpp"),
           "-o", so]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return so, " ".join(cmd[:9])


# ------------------------------------------------------------------ engines
def _ours_state(nu, ni, k, seed=1):
    P = K.init_factors(nu, k, seed)
    Q = K.init_factors(ni, k, seed + 1)
    return dict(P=P, Q=Q, Qd=K.aligned_zeros(Q.shape, Q.dtype), bu=np.zeros(nu, np.float32),
                bi=np.zeros(ni, np.float32), bid=np.zeros(ni, np.float32),
                Gp=np.ones(nu, np.float32), Gq=np.ones(ni, np.float32))


def time_ours(kind, u, i, r, nu, ni, k, epochs, mu):
    s = _ours_state(nu, ni, k)
    n = len(r)
    cpu, wall = [], []
    for ep in range(epochs + 1):       # epoch 0 compiles/loads the cache: not timed
        lr = K.step_size(0.005, ep, 1.0, 0.0)
        hi = min(n, 1000) if ep == 0 else n
        c0, w0 = time.process_time(), time.perf_counter()
        if kind == "adagrad":
            K.adagrad_epoch(u, i, r, 0, hi, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"],
                            s["bid"], s["Gp"], s["Gq"], mu, 0.05, 0.05, 0.01, True, 1e-8)
        else:
            K.sgd_epoch(u, i, r, 0, hi, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"], s["bid"],
                        mu, lr, 0.05, 0.01, True)
        if ep:
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return n * epochs / sum(cpu), n * epochs / sum(wall)


def time_reference(u, i, r, nu, ni, k, n_sub, mu):
    s = _ours_state(nu, ni, k)
    n = min(n_sub, len(r))
    c0, w0 = time.process_time(), time.perf_counter()
    KR.sgd_epoch(u, i, r, 0, n, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"], s["bid"], mu,
                 0.005, 0.05, 0.01, True)
    return n / (time.process_time() - c0), n / (time.perf_counter() - w0)


def time_libmf(lm, u, i, r, nu, ni, k, epochs):
    def run(iters):
        p = lm.params(k, iters, lambda_p2=0.05, lambda_q2=0.05, eta=0.1)
        c, w, *_ = lm.train(u, i, r, nu, ni, p)
        return c, w
    c1, w1 = run(1)
    c2, w2 = run(1 + epochs)
    n = len(r) * epochs
    return n / max(c2 - c1, 1e-9), n / max(w2 - w1, 1e-9)


def time_cornac(u, i, r, nu, ni, k, epochs, mu):
    from cornac.models.mf import backend_cpu
    rid = u.astype(np.int64)
    cid = i.astype(np.int64)
    val = r.astype(np.float32)
    rng = np.random.default_rng(3)
    # cache-line aligned like ours (cornac itself would allocate them unaligned)
    U = K.aligned_copy((rng.standard_normal((nu, k)) * 0.01).astype(np.float32))
    V = K.aligned_copy((rng.standard_normal((ni, k)) * 0.01).astype(np.float32))
    Bu = np.zeros(nu, np.float32)
    Bi = np.zeros(ni, np.float32)

    def run(iters):
        c0, w0 = time.process_time(), time.perf_counter()
        backend_cpu.fit_sgd(rid, cid, val, U, V, Bu, Bi, 0.005, 0.02, float(mu), iters, 1,
                            True, False, False)
        return time.process_time() - c0, time.perf_counter() - w0
    run(1)                                   # warm-up call, not timed
    c2, w2 = run(epochs)
    n = len(r) * epochs
    return n / max(c2, 1e-9), n / max(w2, 1e-9)


# ------------------------------------------------------------------ quality
def quality(args, libmfs, out):
    data_note = "synthetic"
    path = None
    spec = importlib.util.find_spec("recbole")
    if spec is not None and args.quality_data != "synthetic":
        cand = os.path.join(spec.submodule_search_locations[0], "dataset_example", "ml-100k",
                            "ml-100k.inter")
        if os.path.exists(cand):
            path = cand
    if path is not None:
        data = read_ratings(path, "udata")
        data_note = f"MovieLens 100k (real ratings, file shipped in PyPI recbole: {path})"
    else:
        if args.quality_data == "ml100k":
            raise SystemExit("--quality-data ml100k: recbole's ml-100k.inter not installed "
                             "(pip install --no-deps recbole)")
        data = synthetic_ratings(5000, 2000, 500_000, rank=10, noise=0.5, seed=args.seed)
        data_note = "synthetic (5000 x 2000, 500k ratings, rank 10, noise 0.5): no real " \
                    "MovieLens file is installed"
    tr, te = train_test_split(data, 0.1, args.seed)
    seen_u = np.zeros(data.n_users, bool)
    seen_i = np.zeros(data.n_items, bool)
    seen_u[tr.users] = True
    seen_i[tr.items] = True
    keep = seen_u[te.users] & seen_i[te.items]
    te = te.subset(np.flatnonzero(keep))
    k, epochs = args.quality_rank, args.quality_epochs
    rows = []

    def rmse(pred):
        return float(np.sqrt(np.mean((te.values.astype(np.float64) - pred) ** 2)))

    # ours: the job's defaults (see jobs.mf): biases, eta0 * (1 + t)^-0.5
    s = _ours_state(data.n_users, data.n_items, k, seed=args.seed)
    perm, _ = K.block_order(tr.users, tr.items, data.n_users, data.n_items,
                            K.auto_item_block(k))
    u, i, r = tr.users[perm], tr.items[perm], tr.values[perm]
    mu = float(r.mean())
    c0 = time.process_time()
    for ep in range(epochs):
        K.sgd_epoch(u, i, r, 0, len(r), s["P"], s["Q"], s["Qd"], s["bu"], s["bi"], s["bid"],
                    mu, K.step_size(args.quality_lr, ep, 1.0, 0.5), args.quality_reg,
                    args.quality_reg, True)
    t_ours = time.process_time() - c0
    pred = K.predict(te.users, te.items, s["P"], s["Q"], s["bu"], s["bi"], mu, True,
                     np.empty(len(te), np.float32))
    rows.append(("numba-sgd (ours)", rmse(pred), t_ours,
                 f"lr {args.quality_lr}*(1+t)^-0.5, reg {args.quality_reg}, biases"))
    for name, lm in libmfs.items():
        p = lm.params(k, epochs)
        cpu, _, P, Q, b = lm.train(tr.users, tr.items, tr.values, data.n_users, data.n_items, p)
        pred = np.einsum("nk,nk->n", P[te.users], Q[te.items])
        rows.append((name, rmse(pred), cpu, f"libmf defaults: eta {p.eta:g}, l2 "
                     f"{p.lambda_p2:g}/{p.lambda_q2:g}, {p.nr_bins} bins"))
    try:
        import cornac
        from cornac.data import Dataset
        from cornac.models import MF
        triples = list(zip(tr.users.tolist(), tr.items.tolist(), tr.values.astype(float).tolist()))
        ds = Dataset.from_uir(triples, seed=args.seed)
        model = MF(k=k, max_iter=epochs, seed=args.seed, verbose=False)
        c0 = time.process_time()
        model.fit(ds)
        cpu = time.process_time() - c0
        uix = np.array([ds.uid_map[x] for x in te.users.tolist()])
        iix = np.array([ds.iid_map[x] for x in te.items.tolist()])
        pred = (model.global_mean + model.u_biases[uix] + model.i_biases[iix]
                + np.einsum("nk,nk->n", model.u_factors[uix], model.i_factors[iix]))
        rows.append((f"cornac {cornac.__version__} MF", rmse(pred), cpu,
                     f"cornac defaults: lr {model.learning_rate}, reg {model.lambda_reg}, biases"))
    except ImportError:
        rows.append(("cornac", float("nan"), 0.0, "not installed"))
    print(f"\nQuality: test RMSE, rank {k}, {epochs} epochs, 90/10 split (seed {args.seed}), "
          f"{len(tr)} train / {len(te)} test ratings\ndata: {data_note}")
    print(f"{'engine':28s} {'test RMSE':>10s} {'cpu s':>7s}  settings")
    for name, e, t, note in rows:
        print(f"{name:28s} {e:10.4f} {t:7.2f}  {note}")
    out["quality"] = {"data": data_note, "rank": k, "epochs": epochs,
                      "rows": [dict(engine=a, test_rmse=b, cpu_s=c, settings=d)
                               for a, b, c, d in rows]}


# ------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mf_kernel",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000, help="synthetic users")
    ap.add_argument("--items", type=int, default=20_000, help="synthetic items")
    ap.add_argument("--ratings", type=int, default=9_000_000, help="synthetic ratings")
    ap.add_argument("--ranks", type=int, nargs="+", default=[32, 100], help="factor ranks")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per engine and round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds over all engines (interleaved, so a busy spell of the "
                         "machine hits every engine); the best round of each is shown")
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES,
                    help="engines to time")
    ap.add_argument("--reference-ratings", type=int, default=20_000,
                    help="ratings the NumPy reference is timed on")
    ap.add_argument("--libmf-avx-so", default=None, help="a libmf built with -DUSEAVX")
    ap.add_argument("--libmf-sdist", default=None,
                    help="libmf-*.tar.gz to build the AVX variant from (g++)")
    ap.add_argument("--seed", type=int, default=0, help="data and split seed")
    ap.add_argument("--quality", action="store_true", help="also run the RMSE comparison")
    ap.add_argument("--quality-only", action="store_true", help="only the RMSE comparison")
    ap.add_argument("--quality-data", choices=["auto", "ml100k", "synthetic"], default="auto",
                    help="data of the RMSE comparison (auto: ml-100k if installed)")
    ap.add_argument("--quality-rank", type=int, default=16, help="rank for the RMSE comparison")
    ap.add_argument("--quality-epochs", type=int, default=20, help="epochs for the RMSE comparison")
    ap.add_argument("--quality-lr", type=float, default=0.05, help="our eta0 in the RMSE comparison")
    ap.add_argument("--quality-reg", type=float, default=0.05, help="our L2 in the RMSE comparison")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

    out = {"config": vars(args)}
    libmfs = {}
    notes = []
    so = pypi_libmf_so()
    if so and "libmf" in args.engines:
        libmfs["libmf"] = LibMF(so)
        notes.append(f"libmf: PyPI build {so} (compiled without -DUSEAVX/-DUSESSE)")
    elif "libmf" in args.engines:
        notes.append("libmf: not installed (pip install libmf)")
    if "libmf-avx" in args.engines:
        avx = args.libmf_avx_so
        if avx is None and args.libmf_sdist:
            tmp = tempfile.mkdtemp(prefix="libmf_avx_")
            try:
                avx, cmd = build_libmf_avx(args.libmf_sdist, tmp)
                notes.append(f"libmf-avx: built from {args.libmf_sdist}: {cmd} ...")
            except (OSError, subprocess.SubprocessError, IndexError) as e:
                notes.append(f"libmf-avx: build failed ({e})")
                avx = None
        if avx:
            libmfs["libmf-avx"] = LibMF(avx)
            notes.append(f"libmf-avx: {avx}")
        else:
            notes.append("libmf-avx: skipped (give --libmf-avx-so or --libmf-sdist)")

    if not args.quality_only:
        t0 = time.perf_counter()
        d = synthetic_ratings(args.users, args.items, args.ratings, rank=10, noise=0.5,
                              seed=args.seed)
        gen_s = time.perf_counter() - t0
        nu, ni = d.n_users, d.n_items
        rng = np.random.default_rng(args.seed + 1)
        shuf = rng.permutation(len(d))
        ru, ri, rr = d.users[shuf], d.items[shuf], d.values[shuf]   # random order
        mu = float(rr.mean())
        print(f"data: {len(d):,} ratings, {nu:,} users x {ni:,} items (synthetic, made in "
              f"{gen_s:.1f} s); single thread; rates are ratings / CPU second (wall)")
        for n in notes:
            print("  " + n)
        results = []
        for k in args.ranks:
            t0 = time.perf_counter()
            ib = K.auto_item_block(k)
            perm, _ = K.block_order(ru, ri, nu, ni, ib)
            bu_, bi_, br_ = ru[perm], ri[perm], rr[perm]
            layout_s = time.perf_counter() - t0
            rows = {}
            for _ in range(args.rounds):       # engines interleaved; best round kept
                for eng in args.engines:
                    got = None
                    if eng == "numba-sgd":
                        got = time_ours("sgd", bu_, bi_, br_, nu, ni, k, args.epochs, mu)
                    elif eng == "numba-adagrad":
                        got = time_ours("adagrad", bu_, bi_, br_, nu, ni, k, args.epochs, mu)
                    elif eng == "numba-unordered":
                        got = time_ours("sgd", ru, ri, rr, nu, ni, k, args.epochs, mu)
                    elif eng in libmfs:
                        got = time_libmf(libmfs[eng], ru, ri, rr, nu, ni, k, args.epochs)
                    elif eng == "cornac":
                        try:
                            got = time_cornac(ru, ri, rr, nu, ni, k, args.epochs, mu)
                        except ImportError:
                            pass
                    elif eng == "reference":
                        got = time_reference(bu_, bi_, br_, nu, ni, k,
                                             args.reference_ratings, mu)
                    if got is not None and (eng not in rows or got[0] > rows[eng][0]):
                        rows[eng] = got
            base_name = "libmf-avx" if "libmf-avx" in rows else ("libmf" if "libmf" in rows else None)
            base = rows[base_name][0] if base_name else None
            print(f"\nrank {k}: item strip {ib} items, layout {layout_s:.1f} s")
            head = f"{'engine':18s} {'M ratings/s (cpu)':>18s} {'(wall)':>8s}"
            if base:
                head += f" {'vs ' + base_name:>14s}"
            print(head)
            for eng, (c, w) in rows.items():
                line = f"{eng:18s} {c / 1e6:18.2f} {w / 1e6:8.2f}"
                if base:
                    line += f" {c / base:13.2f}x"
                print(line)
                results.append(dict(rank=k, engine=eng, ratings_per_cpu_s=c, ratings_per_wall_s=w,
                                    ratio_vs=base_name, ratio=(c / base if base else None)))
        out["throughput"] = results
        out["notes"] = notes
    if args.quality or args.quality_only:
        quality(args, libmfs if libmfs else {}, out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
