"""Matrix factorisation by SGD on the SSP parameter server.

    mpiexec -n 4 python -m jobs.mf --data ratings.dat --rank 32 --staleness 2
    mpiexec -n 3 python -m jobs.mf                        # built-in synthetic ratings

Model: ``pred(u, i) = mu + bu[u] + bi[i] + P[u] . Q[i]`` (``--no-bias``:
``P[u] . Q[i]``), squared loss + L2 (``--reg`` on factors, ``--reg-bias`` on
biases), step size ``lr * (lr_offset + epoch) ** -lr_power`` (Bosen's
schedule) or row-wise AdaGrad (``--adagrad``).  Kernels: ``kernels/mf.py``.

Distribution (``--split``): ``users`` (default) -- ratings are split across
workers by user (contiguous user ranges with about equal numbers of
ratings), so user factors ``P`` and user biases stay on their worker; item
factors ``Q`` and item biases ``bi`` are parameter-server tables (``Q``:
items x rank, ``bi``: items x 1) read with staleness ``--staleness``.
``--user-table`` keeps ``P`` and ``bu`` in tables too (as Petuum Bosen
does).  ``ratings`` -- Bosen's and the SSP paper's setting: the training
ratings, and the test ratings, are dealt to the workers by a seeded
permutation (``dealt_share``: balanced to one rating, deterministic for a
``--seed`` and worker count, blind to user and item), so a user's ratings
are on every worker; ``P`` and ``bu`` must then be tables, and ``--split
ratings`` implies ``--user-table``.  One epoch is ``--clocks-per-epoch``
clocks; each clock a worker runs the kernel on the next slice of its ratings
(laid out once in cache-sized item strips, ``kernels.mf.block_order``, so a
slice touches about 1/clocks-per-epoch of the items), reading under the SSP
rule only the item rows that slice touches and pushing only those; with
``--user-table`` the same for the user rows the slice touches (under
``--split ratings`` that is most users every clock).  The item blocks keep
two workers off the same item in the same clock (``MfWorker``), but not off
the same user: under ``--split ratings`` at staleness 0 two workers may
both step a user from the same value within a clock and the table adds both
increments (each rating still contributes one step; the steps of one clock
are summed rather than chained), which ``simulate_bsp`` replays exactly.
AdaGrad accumulators are local to each worker.

Evaluation at every epoch boundary (``--eval-every``): train and test RMSE
and the regularised objective, each worker on its own share of the train
and test ratings with its own replica (exact at staleness 0, where every
replica is the synchronised table; each user's and item's L2 term counted
by one worker); at the end, from the final tables.  ``--eval-seconds T``
adds an evaluation against time: every T seconds of training (a common
origin after a barrier) each worker, at the start of its next clock, reads
all its item rows (and with ``--user-table`` user rows; an SSP read at its
clock: at staleness > 0 the servers' current values) and computes the test
error of its share of the test ratings with its current factors;
``metrics_timed.jsonl`` has one record per time point that every worker
reached, the sums of their parts, stamped with the latest worker's time.
That is the model as of that moment (up to each worker's increments of the
clock in progress), whatever clock each worker is at.

Stopping (``--stop-when``): ``own`` (default) -- every worker runs
``--epochs`` epochs of its own ratings and stops, so with a straggler the
fast workers finish early and idle; ``slowest`` -- a worker that has done
its ``--epochs`` keeps training (further passes over its ratings, the step
size schedule continuing with its own epoch count) until the slowest worker
has done ``--epochs``, as in the SSP paper's setting where fast workers keep
computing while a straggler lags.  At staleness 0 both are the same schedule.

Input (``--format``): MovieLens ``u.data`` (tab), MovieLens ``::``
(ml-1m/10m), CSV with a header, whitespace ``row col value`` triplets,
MatrixMarket coordinate; ``auto`` detects (see ``jobs/data/ratings.py``).
Raw ids are remapped to dense ids and the maps saved in ``model.h5``.
Without ``--data``, a deterministic planted low-rank data set is generated.

Outputs in ``--out``: ``summary.json``, ``metrics.jsonl`` (one record per
evaluation), ``model.h5`` (P, Q, bu, bi, mu, user_ids, item_ids).

Checkpoints (``--checkpoint-every``, SIGTERM/SIGUSR1): the tables plus each
worker's user rows (unless in tables), AdaGrad accumulators and evaluation
history; a run stopped by a signal exits with status 75 (``EXIT_STOPPED``)
after writing one, and ``--resume`` continues it, also with another number
of workers (``users``: the user rows and accumulators move to their new
owners; ``ratings``: the ratings are dealt afresh for the new count, the
user accumulators start from the workers' mean as the item ones do).  A
checkpoint is resumed only with the ``--split`` it was written with.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from ssp_mpi import mpienv

mpienv.prepare()  # the MPI environment, before mpi4py.MPI is imported
from ssp_mpi import Session, TableSpec, agree, run_main
from ssp_mpi.cli import (config_from_args, job_parser, nonneg_float, nonneg_int,
                         positive_float, positive_int)
from ssp_mpi.errors import InputError
from ssp_mpi.failure import EXIT_STOPPED
from ssp_mpi.output import OutputDir

from jobs.data import ratings as rio
from kernels import mf as K

FORMAT_CHOICES = ("auto",) + rio.FORMATS


# --------------------------------------------------------------------------- options
def _fraction(text):
    v = nonneg_float(text)
    if v >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return v


def build_parser():
    p = job_parser("ssp-mpi mf", "Matrix factorisation by SGD (squared loss + L2) on the SSP "
                                 "parameter server.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="ratings file (u.data, ratings.dat '::', CSV with header, 'row col "
                        "value' triplets, MatrixMarket; .gz ok); default: built-in synthetic data")
    g.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                   help="input format of --data and --test")
    g.add_argument("--test", default=None,
                   help="test ratings file (ids as in --data; unknown ids are dropped)")
    g.add_argument("--test-fraction", type=_fraction, default=0.1,
                   help="without --test: seeded random fraction of the ratings held out "
                        "(0: no test set)")
    g.add_argument("--synthetic-users", type=positive_int, default=1000,
                   help="synthetic data: users")
    g.add_argument("--synthetic-items", type=positive_int, default=500,
                   help="synthetic data: items")
    g.add_argument("--synthetic-ratings", type=positive_int, default=100_000,
                   help="synthetic data: ratings")
    g.add_argument("--synthetic-rank", type=positive_int, default=5,
                   help="synthetic data: planted rank")
    g.add_argument("--synthetic-noise", type=nonneg_float, default=0.25,
                   help="synthetic data: Gaussian noise std (the best reachable test RMSE)")
    g = p.add_argument_group("model and training")
    g.add_argument("--rank", "-k", type=positive_int, default=16, help="factor rank")
    g.add_argument("--epochs", type=nonneg_int, default=20, help="passes over the ratings")
    g.add_argument("--clocks-per-epoch", type=positive_int, default=4,
                   help="SSP clocks per epoch (each worker's ratings in that many slices; "
                        "more clocks: fresher item factors, more pushes)")
    g.add_argument("--lr", type=positive_float, default=0.05,
                   help="initial step size eta0 (AdaGrad: the base step)")
    g.add_argument("--lr-offset", type=positive_float, default=1.0,
                   help="step size eta0 * (offset + epoch) ** -power: the offset")
    g.add_argument("--lr-power", type=nonneg_float, default=0.5,
                   help="step size schedule power (0: constant)")
    g.add_argument("--adagrad", action="store_true",
                   help="row-wise AdaGrad steps instead of the schedule")
    g.add_argument("--reg", type=nonneg_float, default=0.05, help="L2 on P and Q")
    g.add_argument("--reg-bias", type=nonneg_float, default=0.05, help="L2 on the biases")
    g.add_argument("--no-bias", dest="bias", action="store_false",
                   help="no global mean and biases: pred = P[u] . Q[i]")
    g.add_argument("--init-scale", type=positive_float, default=0.1,
                   help="initial factors uniform in [0, 2*scale/sqrt(rank))")
    g.add_argument("--user-table", action="store_true",
                   help="keep user factors and biases in parameter-server tables too (Bosen); "
                        "implied by --split ratings")
    g.add_argument("--split", choices=["users", "ratings"], default="users",
                   help="how ratings are shared out among workers: users -- contiguous user "
                        "ranges (user factors stay with their worker); ratings -- a seeded "
                        "balanced deal of the ratings regardless of user, with both factor "
                        "matrices in tables (Bosen and the SSP paper; implies --user-table)")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="floating point type of factors and tables")
    g.add_argument("--item-block", type=nonneg_int, default=0,
                   help="items per cache tile (0: sized to a 512 KiB L2 cache)")
    g.add_argument("--eval-every", type=nonneg_int, default=1,
                   help="evaluate train/test RMSE every N epochs (0: only at the end)")
    g.add_argument("--eval-seconds", type=nonneg_float, default=0.0,
                   help="also evaluate the test RMSE every this many seconds of training "
                        "(metrics_timed.jsonl; 0: off)")
    g.add_argument("--stop-when", choices=["own", "slowest"], default="own",
                   help="own: each worker stops after its --epochs epochs; slowest: a worker "
                        "that has done them keeps training until the slowest worker has "
                        "(fast workers do more epochs; the same as own at staleness 0)")
    return p


JOB_KEYS = ("data", "format", "test", "test_fraction", "synthetic_users", "synthetic_items",
            "synthetic_ratings", "synthetic_rank", "synthetic_noise", "rank", "epochs",
            "clocks_per_epoch", "lr", "lr_offset", "lr_power", "adagrad", "reg", "reg_bias",
            "bias", "init_scale", "user_table", "dtype", "item_block", "eval_every",
            "eval_seconds", "stop_when", "split")


# --------------------------------------------------------------------------- data
def load_data(args):
    """(train, test, n_test_dropped): the same on every rank."""
    if args.data is None:
        data = rio.synthetic_ratings(args.synthetic_users, args.synthetic_items,
                                     args.synthetic_ratings, rank=args.synthetic_rank,
                                     noise=args.synthetic_noise, seed=args.seed)
    else:
        data = rio.read_ratings(args.data, args.format)
    dropped = 0
    if args.test is not None:
        test_raw = rio.read_ratings(args.test, args.format)
        test, dropped = rio.encode_like(test_raw, data.user_ids, data.item_ids)
        train = data
    elif args.test_fraction > 0:
        train, test = rio.train_test_split(data, args.test_fraction, args.seed)
    else:
        train, test = data, data.subset(np.zeros(0, np.int64))
    if len(train) == 0:
        raise InputError(f"{train.source}: no training ratings left; lower --test-fraction")
    return train, test, dropped


def user_bounds(users, n_users, n_workers):
    """Contiguous user ranges with about equal numbers of ratings:
    worker w owns users ``bounds[w] <= u < bounds[w + 1]``."""
    counts = np.bincount(users, minlength=n_users).astype(np.int64)
    cum = np.cumsum(counts)
    total = int(cum[-1]) if len(cum) else 0
    bounds = np.zeros(n_workers + 1, np.int64)
    for w in range(1, n_workers):
        bounds[w] = int(np.searchsorted(cum, total * w / n_workers, side="left")) + 1
    bounds[n_workers] = n_users
    bounds = np.minimum(np.maximum.accumulate(bounds), n_users)
    return bounds


def dealt_share(n, index, n_workers, seed, stream):
    """``--split ratings``: the indices (sorted) of worker ``index``'s share
    of ``n`` ratings: a permutation seeded by (seed, stream) dealt round
    robin, so shares differ in size by at most one rating and the rule never
    looks at the user or the item."""
    perm = np.random.default_rng([int(seed), 7927, int(stream)]).permutation(int(n))
    return np.sort(perm[int(index)::max(int(n_workers), 1)])


def worker_share(train, test, split, index, n_workers, seed):
    """(train indices, test indices, lo_user, hi_user) of worker ``index``.

    ``users``: the ratings (train and test) of users ``lo_user <= u <
    hi_user`` (``user_bounds``).  ``ratings``: ``dealt_share`` of the train
    and of the test ratings; ``lo_user:hi_user`` are then only the users
    whose L2 terms this worker adds to the objective (each user once)."""
    bounds = user_bounds(train.users, train.n_users, n_workers)
    lo, hi = int(bounds[index]), int(bounds[index + 1])
    if split == "users":
        sel = np.flatnonzero((train.users >= lo) & (train.users < hi))
        tsel = np.flatnonzero((test.users >= lo) & (test.users < hi))
    elif split == "ratings":
        sel = dealt_share(len(train), index, n_workers, seed, 1)
        tsel = dealt_share(len(test), index, n_workers, seed, 2)
    else:
        raise ValueError(f"--split {split!r}: expected users or ratings")
    return sel, tsel, lo, hi


def make_worker(train, test, opts, index, n_workers):
    """The ``MfWorker`` of worker ``index`` of ``n_workers`` under ``opts["split"]``."""
    sel, tsel, lo, hi = worker_share(train, test, opts.get("split", "users"), index,
                                     n_workers, opts["seed"])
    return MfWorker(train, test, lo, hi, opts, index, n_workers, share=(sel, tsel))


def initial_factors(n, k, seed, stream, scale, dtype):
    """Deterministic initial factors from (seed, stream), independent of ranks."""
    return K.init_factors(n, k, [int(seed), int(stream)], scale=scale, dtype=dtype)


# --------------------------------------------------------------------------- one worker
class MfWorker:
    """One worker's ratings (in tile order) and the per-clock step.

    Shared by the distributed job and ``simulate_bsp`` so that both run the
    same schedule.  ``P``/``bu`` are the worker's user arrays (full size;
    ``--split users``: only its own rows touched) or, with ``--user-table``,
    replicas with deltas ``Pd``/``bud``; ``Q``/``bi`` replicas with deltas
    ``Qd``/``bid``.  ``share``: (train indices, test indices) of its ratings
    (``worker_share``); without it, the ratings of users ``lo_user:hi_user``.

    The items are cut into ``clocks_per_epoch`` contiguous blocks with about
    equal numbers of ratings (the same cut on every worker); the clocks of an
    epoch go through the blocks, each worker starting at a different one
    (worker w of n at block ``w * clocks_per_epoch // n``), so that with at
    least as many blocks as workers no two workers update the same item in
    the same clock (DSGD's strata, Gemulla et al. 2011): at staleness 0 the
    summed increments never double-step an item.  Inside a block the
    ratings are in cache-sized item strips (``kernels.mf.block_order``).
    Users have no such strata: under ``--split ratings`` two workers may
    update the same user in the same clock, and at staleness 0 both start
    from the same value and the tables add both increments (each rating
    still contributes one SGD step; a user's steps of one clock are summed
    instead of chained) -- ``simulate_bsp`` replays exactly that.
    """

    def __init__(self, train, test, lo_user, hi_user, opts, index=0, n_workers=1, share=None):
        self.o = opts
        dt = np.dtype(opts["dtype"])
        cpe = opts["clocks_per_epoch"]
        if share is None:
            share = (np.flatnonzero((train.users >= lo_user) & (train.users < hi_user)),
                     np.flatnonzero((test.users >= lo_user) & (test.users < hi_user)))
        sel, tsel = share
        u, i, r = train.users[sel], train.items[sel], train.values[sel]
        ib = opts["item_block"] or K.auto_item_block(opts["rank"], dt.itemsize, n_buffers=2)
        perm, _ = K.block_order(u, i, train.n_users, train.n_items, ib)
        self.item_bounds = user_bounds(train.items, train.n_items, cpe)
        block = np.searchsorted(self.item_bounds, i[perm], side="right") - 1
        perm = perm[np.argsort(block, kind="stable")]       # block-major, tile order inside
        self.u = np.ascontiguousarray(u[perm], np.int32)
        self.i = np.ascontiguousarray(i[perm], np.int32)
        self.r = np.ascontiguousarray(r[perm], dt)
        self.offset = (int(index) * cpe) // max(int(n_workers), 1)
        self.tu = np.ascontiguousarray(test.users[tsel], np.int32)
        self.ti = np.ascontiguousarray(test.items[tsel], np.int32)
        self.tr = np.ascontiguousarray(test.values[tsel], dt)
        self.lo_user, self.hi_user = int(lo_user), int(hi_user)
        self.items_used = np.unique(np.concatenate([self.i, self.ti])).astype(np.int64)
        # the user rows an evaluation reads (with --user-table): those of its
        # ratings and those whose L2 terms it reports (lo_user:hi_user)
        self.users_used = np.unique(np.concatenate([
            self.u, self.tu, np.arange(lo_user, hi_user)])).astype(np.int64)
        # ratings of item block p: bounds[p]:bounds[p + 1]
        self.bounds = np.searchsorted(self.item_bounds[1:-1], self.i, side="right")
        self.bounds = np.searchsorted(self.bounds, np.arange(cpe + 1), side="left").astype(
            np.int64)
        # the items each clock's block touches: a clock reads and pushes only
        # those rows of Q and bi (evaluations read all of items_used)
        self.part_items = [np.unique(self.i[self.bounds[p]:self.bounds[p + 1]]).astype(np.int64)
                           for p in range(cpe)]
        # and the users (with --user-table: the rows of P and bu it reads and pushes)
        self.part_users = [np.unique(self.u[self.bounds[p]:self.bounds[p + 1]]).astype(np.int64)
                           for p in range(cpe)]
        self.Gp = np.ones(train.n_users, dt)
        self.Gq = np.ones(train.n_items, dt)
        self.mu = opts["mu"]
        self._stage = {}

    def _aligned(self, name, A, D):
        """(A, D) or cache-line-aligned working copies of them (the kernel
        runs about twice as fast on aligned rows; table replicas are plain
        NumPy allocations).  ``_unstage`` writes the results back."""
        if D is None or (K.is_aligned(A) and K.is_aligned(D)):
            return A, D, None
        bufs = self._stage.get(name)
        if bufs is None or bufs[0].shape != A.shape:
            bufs = (K.aligned_empty(A.shape, A.dtype), K.aligned_empty(A.shape, A.dtype))
            self._stage[name] = bufs
        As, Ds = bufs
        As[...] = A
        Ds.fill(0)
        return As, Ds, (A, D)

    @staticmethod
    def _unstage(As, Ds, orig):
        if orig is not None:
            A, D = orig
            A[...] = As
            D += Ds

    def part(self, clock):
        """The item block of ``clock``."""
        return (clock + self.offset) % self.o["clocks_per_epoch"]

    def step(self, clock, P, Pd, Q, Qd, bu, bud, bi, bid):
        """Run the ratings of ``clock``; returns their running squared error."""
        o = self.o
        epoch, part = clock // o["clocks_per_epoch"], self.part(clock)
        lo, hi = int(self.bounds[part]), int(self.bounds[part + 1])
        lr = K.step_size(o["lr"], epoch, o["lr_offset"], o["lr_power"])
        args = (self.u, self.i, self.r, lo, hi)
        Q, Qd, q_orig = self._aligned("Q", Q, Qd)
        P, Pd, p_orig = self._aligned("P", P, Pd)
        if o["adagrad"]:
            if Pd is None:
                sse = K.adagrad_epoch(*args, P, Q, Qd, bu, bi, bid, self.Gp, self.Gq,
                                      self.mu, o["lr"], o["reg"], o["reg_bias"], o["bias"], 1e-8)
            else:
                sse = K.adagrad_epoch_pq(*args, P, Pd, Q, Qd, bu, bud, bi, bid, self.Gp,
                                         self.Gq, self.mu, o["lr"], o["reg"], o["reg_bias"],
                                         o["bias"], 1e-8)
        elif Pd is None:
            sse = K.sgd_epoch(*args, P, Q, Qd, bu, bi, bid, self.mu, lr, o["reg"],
                              o["reg_bias"], o["bias"])
        else:
            sse = K.sgd_epoch_pq(*args, P, Pd, Q, Qd, bu, bud, bi, bid, self.mu, lr, o["reg"],
                                 o["reg_bias"], o["bias"])
        self._unstage(Q, Qd, q_orig)
        self._unstage(P, Pd, p_orig)
        return sse

    def test_error(self, P, Q, bu, bi):
        """[test_sse, n_test] of this worker's users."""
        te = K.sum_squared_error(self.tu, self.ti, self.tr, P, Q, bu, bi, self.mu,
                                 self.o["bias"]) if len(self.tr) else 0.0
        return [float(te), float(len(self.tr))]

    def evaluate(self, P, Q, bu, bi, with_items):
        """[train_sse, n_train, test_sse, n_test, reg_part]: this worker's sums.
        ``reg_part``: L2 terms of users ``lo_user:hi_user`` (and of all items
        if ``with_items``), so that the workers' sums count every row once."""
        o = self.o
        tr = K.sum_squared_error(self.u, self.i, self.r, P, Q, bu, bi, self.mu, o["bias"])
        te = K.sum_squared_error(self.tu, self.ti, self.tr, P, Q, bu, bi, self.mu, o["bias"]) \
            if len(self.tr) else 0.0
        lo, hi = self.lo_user, self.hi_user
        reg = o["reg"] * K.squared_norm(np.ascontiguousarray(P[lo:hi]))
        if o["bias"]:
            reg += o["reg_bias"] * K.squared_norm(np.ascontiguousarray(bu[lo:hi]))
        if with_items:
            reg += o["reg"] * K.squared_norm(Q)
            if o["bias"]:
                reg += o["reg_bias"] * K.squared_norm(bi)
        return np.array([tr, len(self.r), te, len(self.tr), reg], np.float64)


def job_options(args, train):
    """The numbers every worker (and the serial simulation) needs."""
    mu = float(np.mean(train.values, dtype=np.float64)) if args.bias else 0.0
    return {"rank": args.rank, "epochs": args.epochs, "clocks_per_epoch": args.clocks_per_epoch,
            "lr": args.lr, "lr_offset": args.lr_offset, "lr_power": args.lr_power,
            "adagrad": bool(args.adagrad), "reg": args.reg, "reg_bias": args.reg_bias,
            "bias": bool(args.bias), "init_scale": args.init_scale, "dtype": args.dtype,
            "item_block": args.item_block, "mu": mu, "seed": args.seed,
            "user_table": bool(args.user_table or args.split == "ratings"),
            "split": args.split}


def simulate_bsp(train, test, n_workers, opts):
    """Serial replay of the staleness-0 schedule of the distributed job: at
    every clock each worker starts from the tables after all previous clocks
    and the tables then add every worker's increments (also to a user two
    workers updated in the same clock, ``--split ratings``).  Returns (P, Q,
    bu, bi) equal, to rounding, to a distributed run with the same options."""
    dt = np.dtype(opts["dtype"])
    k = opts["rank"]
    nu, ni = train.n_users, train.n_items
    workers = [make_worker(train, test, opts, w, n_workers) for w in range(n_workers)]
    P = initial_factors(nu, k, opts["seed"], 1, opts["init_scale"], dt)
    Q = initial_factors(ni, k, opts["seed"], 2, opts["init_scale"], dt)
    bu = np.zeros(nu, dt)
    bi = np.zeros(ni, dt)
    for c in range(opts["epochs"] * opts["clocks_per_epoch"]):
        dQ, dbi = np.zeros_like(Q), np.zeros_like(bi)
        dP, dbu = np.zeros_like(P), np.zeros_like(bu)
        for wk in workers:
            rQ, rbi = Q.copy(), bi.copy()
            qd, bid = np.zeros_like(Q), np.zeros_like(bi)
            if opts["user_table"]:
                rP, rbu = P.copy(), bu.copy()
                pd, bud = np.zeros_like(P), np.zeros_like(bu)
                wk.step(c, rP, pd, rQ, qd, rbu, bud, rbi, bid)
                dP += pd
                dbu += bud
            else:
                wk.step(c, P, None, rQ, qd, bu, None, rbi, bid)
            dQ += qd
            dbi += bid
        Q += dQ
        bi += dbi
        if opts["user_table"]:
            P += dP
            bu += dbu
    return P, Q, bu, bi


# --------------------------------------------------------------------------- outputs
def write_model(path, P, Q, bu, bi, train, meta):
    import h5py
    with h5py.File(path, "w") as f:
        f.create_dataset("P", data=P)
        f.create_dataset("Q", data=Q)
        f.create_dataset("bu", data=bu)
        f.create_dataset("bi", data=bi)
        f.create_dataset("user_ids", data=np.asarray(train.user_ids, np.int64))
        f.create_dataset("item_ids", data=np.asarray(train.item_ids, np.int64))
        f["P"].attrs["description"] = "user factors (users x rank), row u = dense user u"
        f["Q"].attrs["description"] = "item factors (items x rank), row i = dense item i"
        f["user_ids"].attrs["description"] = "raw id (as in the input file) of each dense user"
        f["item_ids"].attrs["description"] = "raw id (as in the input file) of each dense item"
        for key, v in meta.items():
            f.attrs[key] = v if isinstance(v, (int, float, str, bool)) else str(v)


def _jsonable_staleness(s):
    return str(s) if isinstance(s, float) and math.isinf(s) else s


# --------------------------------------------------------------------------- main
def _resolve_resume(args, checkpoint_dir):
    """The checkpoint ``--resume`` names; refused if it was written with
    another ``--split`` (the workers' shares and local state differ)."""
    from ssp_mpi.checkpoint import resolve
    ck = resolve(True if args.resume == "latest" else args.resume, checkpoint_dir)
    was = (ck.config.get("job") or {}).get("split", "users")
    if was != args.split:
        raise InputError(f"--resume {ck.path}: that run used --split {was}, this one "
                         f"--split {args.split}; resume with --split {was} (or start afresh "
                         "without --resume)")
    return ck


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    args.user_table = args.user_table or args.split == "ratings"   # documented in --help
    from mpi4py import MPI
    world = MPI.COMM_WORLD

    train, test, dropped = agree(world, load_data, args)
    opts = job_options(args, train)
    dt = np.dtype(args.dtype)
    k = args.rank
    nu, ni = train.n_users, train.n_items
    staleness = args.staleness
    job = {key: _jsonable_staleness(getattr(args, key)) for key in JOB_KEYS}
    job.update(n_train=len(train), n_test=len(test), n_users=nu, n_items=ni)
    cfg = config_from_args(args, job)
    resume = None
    if args.resume:
        resume = agree(world, _resolve_resume, args, cfg.checkpoint_dir)
    seed, scale = args.seed, args.init_scale
    tables = [TableSpec("Q", ni, k, args.dtype, staleness=staleness,
                        init=lambda ids: initial_factors(ni, k, seed, 2, scale, dt)[ids]),
              TableSpec("bi", ni, 1, args.dtype, staleness=staleness)]
    if args.user_table:
        tables += [TableSpec("P", nu, k, args.dtype, staleness=staleness,
                             init=lambda ids: initial_factors(nu, k, seed, 1, scale, dt)[ids]),
                   TableSpec("bu", nu, 1, args.dtype, staleness=staleness)]
    n_clocks = args.epochs * args.clocks_per_epoch
    cpe = args.clocks_per_epoch
    stop_slowest = args.stop_when == "slowest"

    def train_fn(w):
        me = make_worker(train, test, opts, w.index, w.n_workers)
        tQ, tbi = w.table("Q"), w.table("bi")
        if args.user_table:
            tP, tbu = w.table("P"), w.table("bu")
        else:
            P_local = initial_factors(nu, k, seed, 1, scale, dt)
            bu_local = np.zeros(nu, dt)
        evals = []          # rows: clock, epoch, train_sse, n_train, test_sse, n_test, reg
        lo, hi = me.lo_user, me.hi_user
        if w.resumed is not None:
            old_n = w.resumed.n_workers
            if old_n == w.n_workers:        # the same split: take back exactly my state
                st = w.resumed.worker_state(w.index)
                if not args.user_table:
                    P_local[lo:hi] = st["P_rows"]
                    bu_local[lo:hi] = st["bu_rows"]
                me.Gp[:] = st["Gp"]
                me.Gq[:] = st["Gq"]
                evals = [list(row) for row in np.asarray(st["evals"]).reshape(-1, 7)]
            else:                           # another worker count: share out afresh
                states = w.resumed.worker_states()
                if args.split == "users":   # user rows (if local) and accumulators move
                    old = user_bounds(train.users, nu, old_n)
                    for j, st in enumerate(states):
                        a, b = old[j], old[j + 1]
                        if not args.user_table:
                            P_local[a:b] = st["P_rows"]
                            bu_local[a:b] = st["bu_rows"]
                        me.Gp[a:b] = st["Gp"][a:b]
                else:                       # P, bu in tables; every worker had all users
                    me.Gp[:] = np.mean([st["Gp"] for st in states], axis=0)
                # AdaGrad's item accumulators are per worker: start from their mean
                me.Gq[:] = np.mean([st["Gq"] for st in states], axis=0)
                # evaluation parts are summed over workers per clock: keep them once
                evals = ([list(row) for st in states
                          for row in np.asarray(st["evals"]).reshape(-1, 7)]
                         if w.is_leader else [])

        def state():
            out = {"Gp": me.Gp, "Gq": me.Gq,
                   "evals": np.array(evals, np.float64).reshape(-1, 7)}
            if not args.user_table:
                out["P_rows"] = P_local[lo:hi]
                out["bu_rows"] = bu_local[lo:hi]
            return out
        w.set_state(state)

        def views(items, users):
            """The arrays of a clock, with the item rows ``items`` (and with
            --user-table the user rows ``users``) made valid under the SSP
            rule (declared as the tables' rows, so the push at the clock
            finds its dirty rows equal to them and reuses their cached row
            set)."""
            tQ.use_rows(items)
            tbi.use_rows(items)
            Q = tQ.get()
            bi = tbi.get().reshape(-1)
            if args.user_table:
                tP.use_rows(users)
                tbu.use_rows(users)
                return tP.get(), tP.delta, Q, tbu.get().reshape(-1), tbu.delta.reshape(-1), bi
            return P_local, None, Q, bu_local, None, bi

        def evaluate(clock, P, Q, bu, bi):
            parts = me.evaluate(P, Q, bu, bi, w.is_leader)
            row = [float(clock), float(clock // cpe)] + parts.tolist()
            evals.append(row)
            return parts

        def progress(epoch, parts, scope):
            if not w.is_leader:
                return
            tr = math.sqrt(parts[0] / max(parts[1], 1))
            msg = f"epoch {epoch}/{args.epochs}: train RMSE {tr:.4f}"
            if parts[3] > 0:
                msg += f", test RMSE {math.sqrt(parts[2] / parts[3]):.4f}"
            if scope:
                msg += f" ({scope})"
            recs = w.stats.records[-cpe:]
            if recs:
                wall = sum(r["wall_s"] for r in recs)
                msg += (f"; worker 0: {len(me.r) / max(wall, 1e-12) / 1e6:.2f}M ratings/s, "
                        f"compute {sum(r['compute_s'] for r in recs):.3f}s comm "
                        f"{sum(r['comm_s'] for r in recs):.3f}s wait "
                        f"{sum(r['wait_s'] for r in recs):.3f}s")
            print(msg, flush=True)

        def finished(c):
            """Stop before clock ``c``?  ``--stop-when slowest``: only once the
            slowest worker has done ``n_clocks``; a fast worker learns that
            from the server clock, waiting no longer than the SSP read of
            clock ``c`` would (so at staleness 0 it stops at ``n_clocks``)."""
            if c < n_clocks:
                return False
            if not stop_slowest:
                return True
            if math.isinf(staleness):
                return w.server_clock() >= n_clocks
            return w.wait_server_clock(min(c - staleness, n_clocks)) >= n_clocks

        timed = []          # rows: time point, elapsed s, clock, test_sse, n_test
        next_eval = args.eval_seconds
        processed = 0       # ratings this worker ran through the kernel
        w.barrier()         # a common time origin for --eval-seconds
        w.stats.restart_clock()      # data layout above is set-up, not compute
        t_start = time.perf_counter()
        while not finished(w.clock_value):
            c = w.clock_value
            if args.eval_seconds and time.perf_counter() - t_start >= next_eval:
                P, Pd, Q, bu, bud, bi = views(me.items_used, me.users_used)
                now = time.perf_counter() - t_start
                point = int(now // args.eval_seconds)
                timed.append([point, now, c] + me.test_error(P, Q, bu, bi))
                next_eval = (point + 1) * args.eval_seconds
            if c < n_clocks and c % cpe == 0 and args.eval_every \
                    and (c // cpe) % args.eval_every == 0 and c > 0:
                P, Pd, Q, bu, bud, bi = views(me.items_used, me.users_used)
                parts = evaluate(c, P, Q, bu, bi)
                if staleness == 0:
                    parts = w.allreduce(parts)
                    progress(c // cpe, parts, "")
                else:
                    progress(c // cpe, parts, "worker 0's share and replica")
            part = me.part(c)
            P, Pd, Q, bu, bud, bi = views(me.part_items[part], me.part_users[part])
            me.step(c, P, Pd, Q, tQ.delta, bu, bud, bi, tbi.delta.reshape(-1))
            processed += int(me.bounds[part + 1] - me.bounds[part])
            w.clock()
        train_wall = time.perf_counter() - t_start
        my_clocks = w.clock_value
        if stop_slowest:
            # reading the final tables waits for every worker to reach this
            # worker's clock: the workers that stopped earlier catch up with
            # empty clocks (nothing to push)
            last = max(w.allgather(my_clocks))
            while w.clock_value < last:
                w.clock()
        # final state: every worker's last clock is in the tables
        Q = tQ.get_final().copy()
        bi = tbi.get_final().reshape(-1).copy()
        if args.user_table:
            P = tP.get_final().copy()
            bu = tbu.get_final().reshape(-1).copy()
        else:
            P, bu = P_local, bu_local
        final = w.allreduce(me.evaluate(P, Q, bu, bi, w.is_leader))
        if w.is_leader and n_clocks:
            progress(args.epochs, final, "final tables")
        if not args.user_table:
            rows = w.gather((lo, hi, P[lo:hi].copy(), bu[lo:hi].copy()))
            if w.is_leader:
                P = P.copy()
                bu = bu.copy()
                for a, b, Pr, br in rows:
                    P[a:b] = Pr
                    bu[a:b] = br
        all_evals = w.gather(np.array(evals, np.float64).reshape(-1, 7))
        all_timed = w.gather(np.array(timed, np.float64).reshape(-1, 5))
        work = w.gather((my_clocks, processed))
        all_recs = w.gather(list(w.stats.records))
        walls = w.allgather(train_wall)
        return {"P": P, "Q": Q, "bu": bu, "bi": bi, "final": final, "evals": all_evals,
                "timed": all_timed, "work": work, "records": all_recs,
                "train_wall": max(walls)}

    # one rank per node compiles (or loads) the kernels first, then the rest
    # load them from Numba's cache, before any clock is timed
    mpienv.compile_once(world, K.warmup)
    with Session(cfg, tables=tables, resume=resume) as ps:
        t0 = time.perf_counter()
        res = ps.run(train_fn)
        wall = time.perf_counter() - t0
        if res.stopped:                 # a signal asked to stop: checkpoint written
            if res.worker is not None and res.worker.is_leader:
                print(f"stopped at clock {res.worker.clock_value} after a checkpoint; "
                      "continue with --resume", flush=True)
            return EXIT_STOPPED
        if res.worker is not None and res.worker.is_leader:
            _write_outputs(args, train, test, dropped, opts, ps.layout, res, wall)
    return 0


def _rmse(sse, n):
    return math.sqrt(sse / n) if n > 0 else None


def _timed_records(parts, n_workers, cpe):
    """``--eval-seconds``: one record per time point every worker evaluated,
    the sums of their test errors, stamped with the latest worker's time."""
    by_point = {}
    for wi, arr in enumerate(parts):
        for row in np.asarray(arr).reshape(-1, 5):
            by_point.setdefault(int(row[0]), {})[wi] = row
    out = []
    for point in sorted(by_point):
        rows = by_point[point]
        if len(rows) < n_workers:
            continue
        rows = [rows[wi] for wi in range(n_workers)]
        times = [float(r[1]) for r in rows]
        sse, n = sum(float(r[3]) for r in rows), sum(float(r[4]) for r in rows)
        out.append({"point": point, "elapsed_s": max(times),
                    "elapsed_spread_s": max(times) - min(times), "test_rmse": _rmse(sse, n),
                    "clocks": [int(r[2]) for r in rows],
                    "epochs": [float(r[2]) / cpe for r in rows]})
    return out


def _write_outputs(args, train, test, dropped, opts, layout, res, wall):
    v = res.value
    n_workers = layout.n_workers
    cpe = args.clocks_per_epoch
    fin = v["final"]
    summ = res.summary or {}
    train_wall = v["train_wall"]
    n_clocks = args.epochs * cpe
    clocks_done = [int(c) for c, _ in v["work"]]
    processed = sum(int(n) for _, n in v["work"])
    rps = processed / train_wall if train_wall > 0 else 0.0
    config = {key: _jsonable_staleness(x) for key, x in vars(args).items()}
    summary = {
        "train_rmse": _rmse(fin[0], fin[1]), "test_rmse": _rmse(fin[2], fin[3]),
        "objective": float(fin[0] + fin[4]), "epochs": args.epochs, "rank": args.rank,
        "clocks": n_clocks, "staleness": _jsonable_staleness(args.staleness),
        "workers": n_workers, "servers": layout.n_servers, "wall_s": wall,
        "train_wall_s": train_wall,
        "compute_s": summ.get("compute_s", 0.0), "comm_s": summ.get("comm_s", 0.0),
        "wait_s": summ.get("wait_s", 0.0), "cpu_s": summ.get("cpu_s", 0.0),
        "compute_max_s": summ.get("compute_max_s", 0.0),
        "comm_max_s": summ.get("comm_max_s", 0.0), "wait_max_s": summ.get("wait_max_s", 0.0),
        "cpu_max_s": summ.get("cpu_max_s", 0.0),
        "ratings_per_s": rps, "ratings_per_s_per_worker": rps / max(n_workers, 1),
        "ratings_processed": processed, "clocks_per_worker": clocks_done,
        "epochs_per_worker": [c / cpe for c in clocks_done],
        "n_train": len(train), "n_test": int(fin[3]), "test_dropped_unknown_ids": dropped,
        "n_users": train.n_users, "n_items": train.n_items, "global_mean": opts["mu"],
        "data": train.source, "format": train.format, "config": config,
        "stats_note": "compute_s/comm_s/wait_s: mean over workers of their totals (wall "
                      "seconds of their clocks); cpu_s: the same clocks' CPU seconds of the "
                      "worker process; *_max_s: the largest worker's",
    }
    if train.truth:
        summary["synthetic_noise"] = train.truth["noise"]
    # per-evaluation metrics: sums of the workers' parts at the same clock
    by_clock = {}
    for arr in v["evals"]:
        for row in np.asarray(arr).reshape(-1, 7):
            by_clock.setdefault(int(row[0]), []).append(row)
    recs_by_clock = {}
    for w_index, recs in enumerate(v["records"]):
        for r in recs:
            recs_by_clock.setdefault(int(r["clock"]), {})[w_index] = r

    def per_worker(upto, since):
        out = {"compute_s": [], "comm_s": [], "wait_s": []}
        for wi in range(n_workers):
            for key in out:
                out[key].append(sum(recs_by_clock.get(c, {}).get(wi, {}).get(key, 0.0)
                                    for c in range(since, upto)))
        return out

    with OutputDir(args.out) as out:
        last = 0
        for clock in sorted(by_clock):
            rows = np.array(by_clock[clock])
            s = rows[:, 2:].sum(0)
            elapsed = max((r.get("elapsed_s", 0.0) for r in recs_by_clock.get(clock - 1,
                                                                             {}).values()),
                          default=None)
            rec = {"epoch": clock // cpe, "clock": clock, "elapsed_s": elapsed,
                   "train_loss": float(s[0] + s[4]), "train_rmse": _rmse(s[0], s[1]),
                   "test_rmse": _rmse(s[2], s[3]), "workers_reporting": len(rows)}
            rec.update(per_worker(clock, last))
            last = clock
            out.append_metrics(rec)
        elapsed = max((r.get("elapsed_s", 0.0) for r in recs_by_clock.get(n_clocks - 1,
                                                                         {}).values()),
                      default=None)
        rec = {"epoch": args.epochs, "clock": n_clocks, "elapsed_s": elapsed,
               "train_loss": float(fin[0] + fin[4]), "train_rmse": _rmse(fin[0], fin[1]),
               "test_rmse": _rmse(fin[2], fin[3]), "final": True}
        rec.update(per_worker(n_clocks, last))
        out.append_metrics(rec)
        if args.eval_seconds:
            for rec in _timed_records(v["timed"], n_workers, cpe):
                out.append_metrics(rec, "metrics_timed.jsonl")
        write_model(out.path("model.h5"), v["P"], v["Q"], v["bu"], v["bi"], train,
                    {"rank": args.rank, "epochs": args.epochs, "global_mean": opts["mu"],
                     "bias": bool(args.bias), "train_rmse": summary["train_rmse"] or 0.0,
                     "test_rmse": summary["test_rmse"] if summary["test_rmse"] is not None
                     else float("nan"), "data": train.source, "format": train.format,
                     "prediction": "global_mean + bu[u] + bi[i] + P[u] . Q[i]"
                     if args.bias else "P[u] . Q[i]"})
        out.write_json("summary.json", summary)
    te = summary["test_rmse"]
    print(f"done: train RMSE {summary['train_rmse']:.4f}"
          + (f", test RMSE {te:.4f}" if te is not None else "")
          + f", {rps / 1e6:.2f}M ratings/s ({n_workers} workers, {layout.n_servers} servers); "
            f"outputs in {args.out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
