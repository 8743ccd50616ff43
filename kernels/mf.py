"""Numba kernels for matrix factorisation by stochastic gradient descent.

Model: a rating r of user u for item i is predicted as

    pred(u, i) = P[u] . Q[i]                         (use_bias=False)
    pred(u, i) = mu + bu[u] + bi[i] + P[u] . Q[i]     (use_bias=True)

and the loss is the squared error plus L2 regularisation.  For one rating,
with e = r - pred computed from the values *before* the update, the
updates are (all in the dtype of the factor arrays)

    gp = e * Q[i] - reg * P[u]          gq = e * P[u] - reg * Q[i]
    P[u]  += s_u * gp                   Q[i]  += s_i * gq
    bu[u] += s_u * (e - reg_bias * bu[u])
    bi[i] += s_i * (e - reg_bias * bi[i])

where s_u = s_i = lr for plain SGD, and for the row-wise AdaGrad variant

    s_u = lr / sqrt(Gp[u] + eps);  s_i = lr / sqrt(Gq[i] + eps)
    then Gp[u] += mean(gp ** 2); Gq[i] += mean(gq ** 2)

(one accumulator per row, as libmf does, rather than one per element; the
step uses the accumulators from before the rating, so one pass over the
row does both, again as libmf does).

Parameter-server convention
---------------------------
Q and bi are a *replica* of a server table.  Every increment a kernel adds
to them is also added to the same-shaped delta buffers Qd and bid
(``Q[i] += g`` and ``Qd[i] += g``), which the caller pushes later.  P and bu
are local arrays without deltas, except in the ``*_pq`` variants where P and
bu also have delta buffers Pd and bud (both factor matrices in tables, as
Petuum Bosen keeps them).

The kernels are pure: no MPI, no logging, no global random state.  The step
size for a clock/epoch is computed by the caller (see :func:`step_size`)
and passed in.  They run over ``ratings[lo:hi]`` in the order stored; use
:func:`block_order` once to lay the ratings out in cache-friendly tiles.

dtypes: float32 by default, float64 works too; all factor, bias and delta
arrays of one call must share one dtype, ids are int32 or int64.  Arrays
must be C-contiguous; for speed, factor and delta arrays should start on a
64-byte boundary (:func:`aligned_zeros`, :func:`init_factors`): with
NumPy's default 16-byte offset a rank-32 float32 row spans three cache
lines and the kernel runs about half as fast.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "step_size", "sgd_epoch", "sgd_epoch_pq", "adagrad_epoch", "adagrad_epoch_pq",
    "sum_squared_error", "predict", "squared_norm", "objective",
    "block_order", "auto_item_block", "init_factors", "aligned_empty", "aligned_zeros",
    "aligned_copy", "is_aligned",
]

_JIT = dict(cache=True, fastmath=True, nogil=True)
# Ratings ahead at which the kernels prefetch the next user's row of P (it
# comes from L3 or memory; the strip's rows of Q are already in L2).
PREFETCH_DISTANCE = 16


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Hint the CPU to load the cache line holding ``arr[row, col]`` (no-op
    semantics: never faults, changes no value)."""
    if not isinstance(arr, types.Array) or arr.ndim != 2:
        return None
    sig = types.void(arr, row, col)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        r = context.cast(builder, args[1], signature.args[1], types.intp)
        c = context.cast(builder, args[2], signature.args[2], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r, c], wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read intent, keep in all levels, data cache.  (Write intent,
        # PREFETCHW, crashed the process here with fastmath loops: keep 0.)
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True)
def step_size(eta0, t, offset=100.0, power=0.5):
    """Bosen's step-size schedule ``eta0 * (offset + t) ** -power``.

    ``t`` is the number of epochs (or clocks) done so far; ``power = 0``
    gives a constant step ``eta0``.
    """
    return eta0 * (offset + t) ** (-power)


@njit(inline="always")
def _like(x, ref):
    # A scalar of ref's dtype (so float32 arrays are not promoted to float64).
    c = np.empty(1, dtype=ref.dtype)
    c[0] = x
    return c[0]


def _make_core(use_bias, p_delta, adagrad):
    """One SGD/AdaGrad sweep, specialised at compile time on three flags
    (closure constants, so the dead branches vanish from the hot loop)."""

    @njit(**_JIT)
    def core(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
             Gp, Gq, mu, lr, reg, reg_bias, eps):
        k = P.shape[1]
        lr_ = _like(lr, P)
        reg_ = _like(reg, P)
        regb = _like(reg_bias, P)
        mu_ = _like(mu, P)
        eps_ = _like(eps, P)
        inv_k = _like(1.0 / k, P)
        zero = _like(0.0, P)
        line = 64 // P.itemsize
        sse = 0.0
        for n in range(lo, hi):
            m = n + PREFETCH_DISTANCE
            if m < hi and users[m] != users[m - 1]:
                un = users[m]
                for f in range(0, k, line):
                    _prefetch(P, un, f)
                    if p_delta:
                        _prefetch(Pd, un, f)
            u = users[n]
            i = items[n]
            if use_bias:
                s = mu_ + bu[u] + bi[i]
            else:
                s = zero
            for f in range(k):
                s += P[u, f] * Q[i, f]
            e = ratings[n] - s
            sse += e * e
            if adagrad:
                # one pass: the step uses the accumulators as they were before
                # this rating; its squared gradients are added afterwards
                su = lr_ / np.sqrt(Gp[u] + eps_)
                si = lr_ / np.sqrt(Gq[i] + eps_)
                gp2 = zero
                gq2 = zero
                for f in range(k):
                    pf = P[u, f]
                    qf = Q[i, f]
                    gp = e * qf - reg_ * pf
                    gq = e * pf - reg_ * qf
                    gp2 += gp * gp
                    gq2 += gq * gq
                    P[u, f] = pf + su * gp
                    Q[i, f] = qf + si * gq
                    Qd[i, f] += si * gq
                    if p_delta:
                        Pd[u, f] += su * gp
                Gp[u] += gp2 * inv_k
                Gq[i] += gq2 * inv_k
            else:
                for f in range(k):
                    pf = P[u, f]
                    qf = Q[i, f]
                    gp = lr_ * (e * qf - reg_ * pf)
                    gq = lr_ * (e * pf - reg_ * qf)
                    P[u, f] = pf + gp
                    Q[i, f] = qf + gq
                    Qd[i, f] += gq
                    if p_delta:
                        Pd[u, f] += gp
                su = lr_
                si = lr_
            if use_bias:
                gbu = su * (e - regb * bu[u])
                bu[u] += gbu
                if p_delta:
                    bud[u] += gbu
                gbi = si * (e - regb * bi[i])
                bi[i] += gbi
                bid[i] += gbi
        return sse

    return core


# _CORE[use_bias][p_delta][adagrad]
_c_fff = _make_core(False, False, False)
_c_fft = _make_core(False, False, True)
_c_ftf = _make_core(False, True, False)
_c_ftt = _make_core(False, True, True)
_c_tff = _make_core(True, False, False)
_c_tft = _make_core(True, False, True)
_c_ttf = _make_core(True, True, False)
_c_ttt = _make_core(True, True, True)


@njit(**_JIT)
def _run(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq,
         mu, lr, reg, reg_bias, eps, use_bias, p_delta, adagrad):
    if use_bias:
        if p_delta:
            if adagrad:
                return _c_ttt(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
            return _c_ttf(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
        if adagrad:
            return _c_tft(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
        return _c_tff(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
    if p_delta:
        if adagrad:
            return _c_ftt(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
        return _c_ftf(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
    if adagrad:
        return _c_fft(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)
    return _c_fff(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps)


@njit(inline="always")
def _dummy2(P):
    return np.empty((0, P.shape[1]), dtype=P.dtype)


@njit(inline="always")
def _dummy1(P):
    return np.empty(0, dtype=P.dtype)


@njit(**_JIT)
def sgd_epoch(users, items, ratings, lo, hi, P, Q, Qd, bu, bi, bid, mu, lr,
              reg, reg_bias=0.0, use_bias=True):
    """Plain SGD over ratings[lo:hi]; P, bu local, Q/bi replica + Qd/bid deltas.

    Returns the sum of squared errors of the ratings visited, each taken
    just before its update (a cheap running estimate of the train loss).
    With ``use_bias=False`` the bias arrays are not read or written (pass
    empty arrays of the factor dtype) and ``mu`` is ignored.
    """
    return _run(users, items, ratings, lo, hi, P, _dummy2(P), Q, Qd, bu,
                _dummy1(P), bi, bid, _dummy1(P), _dummy1(P), mu, lr, reg,
                reg_bias, 0.0, use_bias, False, False)


@njit(**_JIT)
def sgd_epoch_pq(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                 mu, lr, reg, reg_bias=0.0, use_bias=True):
    """Plain SGD where P and bu are table replicas too (deltas Pd and bud)."""
    return _run(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                _dummy1(P), _dummy1(P), mu, lr, reg, reg_bias, 0.0, use_bias,
                True, False)


@njit(**_JIT)
def adagrad_epoch(users, items, ratings, lo, hi, P, Q, Qd, bu, bi, bid, Gp, Gq,
                  mu, lr, reg, reg_bias=0.0, use_bias=True, eps=1e-8):
    """Row-wise AdaGrad over ratings[lo:hi] (see the module docstring).

    Gp (n_users,) and Gq (n_items,) are the caller's accumulators of mean
    squared gradients, same dtype as P; start them at 1.0 so the first
    steps are about ``lr``.  They are local state (not table deltas).
    """
    return _run(users, items, ratings, lo, hi, P, _dummy2(P), Q, Qd, bu,
                _dummy1(P), bi, bid, Gp, Gq, mu, lr, reg, reg_bias, eps,
                use_bias, False, True)


@njit(**_JIT)
def adagrad_epoch_pq(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi,
                     bid, Gp, Gq, mu, lr, reg, reg_bias=0.0, use_bias=True,
                     eps=1e-8):
    """Row-wise AdaGrad where P and bu also have delta buffers."""
    return _run(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                Gp, Gq, mu, lr, reg, reg_bias, eps, use_bias, True, True)


@njit(**_JIT)
def sum_squared_error(users, items, ratings, P, Q, bu, bi, mu, use_bias):
    """Sum over ratings of (r - pred)^2, accumulated in float64."""
    k = P.shape[1]
    mu_ = _like(mu, P)
    zero = _like(0.0, P)
    sse = 0.0
    for n in range(users.shape[0]):
        u = users[n]
        i = items[n]
        s = zero
        for f in range(k):
            s += P[u, f] * Q[i, f]
        if use_bias:
            s += mu_ + bu[u] + bi[i]
        e = ratings[n] - s
        sse += e * e
    return sse


@njit(**_JIT)
def predict(users, items, P, Q, bu, bi, mu, use_bias, out):
    """Write the predictions for (users[n], items[n]) into out[n]."""
    k = P.shape[1]
    mu_ = _like(mu, P)
    zero = _like(0.0, P)
    for n in range(users.shape[0]):
        u = users[n]
        i = items[n]
        s = zero
        for f in range(k):
            s += P[u, f] * Q[i, f]
        if use_bias:
            s += mu_ + bu[u] + bi[i]
        out[n] = s
    return out


@njit(**_JIT)
def squared_norm(A):
    """Sum of squares of all elements of a 1-D or 2-D array, in float64."""
    acc = 0.0
    flat = A.reshape(A.size)
    for j in range(flat.shape[0]):
        acc += float(flat[j]) * float(flat[j])
    return acc


def objective(users, items, ratings, P, Q, bu, bi, mu, reg, reg_bias=0.0,
              use_bias=True):
    """Regularised loss ``sse + reg*(|P|^2+|Q|^2) + reg_bias*(|bu|^2+|bi|^2)``.

    Returns ``(objective, sse)``; RMSE is ``sqrt(sse / len(ratings))``.
    """
    sse = sum_squared_error(users, items, ratings, P, Q, bu, bi, mu, use_bias)
    obj = sse + reg * (squared_norm(P) + squared_norm(Q))
    if use_bias:
        obj += reg_bias * (squared_norm(bu) + squared_norm(bi))
    return obj, sse


# ---------------------------------------------------------------- ordering
def auto_item_block(k, itemsize=4, cache_bytes=512 * 1024, n_buffers=2):
    """Items per strip so that a strip of Q (plus its delta) fills about
    half of a per-core L2 cache of ``cache_bytes``."""
    row = max(1, k) * itemsize * n_buffers
    return int(max(16, (cache_bytes // 2) // row))


def block_order(users, items, n_users, n_items, item_block, user_block=None,
                seed=None):
    """Cache-aware order of ratings (FPSGD/libmf-style tiles).

    Ratings are grouped into tiles of ``user_block`` users x ``item_block``
    items (``user_block=None``: all users, i.e. item strips).  Tiles are
    visited user-block-major; inside a tile ratings are sorted by user then
    item, so a user's row of P is loaded once per tile and rises
    monotonically (hardware prefetch friendly), while the tile's rows of Q
    (and Qd) stay in L2.  ``seed`` (optional) shuffles the order in which
    tiles are visited (the contents of each tile stay sorted).

    Returns ``(perm, tile_ptr)``: apply ``perm`` to the rating arrays
    (``users[perm]`` ...); tile t holds ratings ``tile_ptr[t]:tile_ptr[t+1]``
    of the permuted arrays (visit order).
    """
    users = np.asarray(users)
    items = np.asarray(items)
    if users.shape != items.shape:
        raise ValueError("users and items must have the same length")
    item_block = int(max(1, item_block))
    user_block = int(n_users if user_block is None else max(1, user_block))
    n_ib = (int(n_items) + item_block - 1) // item_block
    n_ub = (int(n_users) + user_block - 1) // user_block
    n_tiles = max(1, n_ib * n_ub)
    u64 = users.astype(np.int64)
    i64 = items.astype(np.int64)
    tile = (u64 // user_block) * n_ib + i64 // item_block
    if seed is not None:
        rank_of_tile = np.random.default_rng(seed).permutation(n_tiles)
        tile = rank_of_tile[tile]
    # One stable sort on a composite key: (tile, user, item).
    span_u = int(n_users) + 1
    span_i = int(n_items) + 1
    if n_tiles * span_u * span_i < 2 ** 62:
        key = (tile * span_u + u64) * span_i + i64
        perm = np.argsort(key, kind="stable")
    else:
        perm = np.lexsort((i64, u64, tile))
    counts = np.bincount(tile, minlength=n_tiles)
    tile_ptr = np.zeros(n_tiles + 1, dtype=np.int64)
    np.cumsum(counts, out=tile_ptr[1:])
    return perm, tile_ptr


def aligned_empty(shape, dtype=np.float32, align=64):
    """An uninitialised C-contiguous array whose start is ``align``-byte aligned.

    NumPy's default allocation starts 16 bytes past a cache line, so every
    row of 32 float32 straddles three cache lines instead of two; the SGD
    kernels run about twice as fast on cache-line-aligned factor arrays.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype=np.float32, align=64):
    a = aligned_empty(shape, dtype, align)
    a.fill(0)
    return a


def aligned_copy(a, align=64):
    out = aligned_empty(a.shape, a.dtype, align)
    out[...] = a
    return out


def is_aligned(a, align=64):
    return a.ctypes.data % align == 0


def init_factors(n, k, seed, scale=0.1, dtype=np.float32):
    """Deterministic initial factors: uniform in [0, 2*scale/sqrt(k)).

    Uses its own ``np.random.default_rng(seed)``; same seed, same array.
    The result is 64-byte aligned (see :func:`aligned_empty`).
    """
    rng = np.random.default_rng(seed)
    a = rng.random((int(n), int(k)), dtype=np.float64) * (2.0 * scale / np.sqrt(max(k, 1)))
    return aligned_copy(a.astype(dtype))


def warmup():
    """Compile every kernel of this module (float32 and float64, int32 ids)
    into Numba's on-disk cache; also the ratings parser of
    ``jobs.data.ratings`` when that module is importable."""
    for dt in (np.float32, np.float64):
        for it in (np.int32,):
            u = np.zeros(2, it)
            i = np.zeros(2, it)
            r = np.ones(2, dt)
            P = np.zeros((1, 2), dt)
            Q = np.zeros((1, 2), dt)
            v = np.zeros(1, dt)
            for use_bias in (True, False):
                sgd_epoch(u, i, r, 0, 2, P, Q, Q.copy(), v, v.copy(), v.copy(),
                          0.0, 0.1, 0.0, 0.0, use_bias)
                sgd_epoch_pq(u, i, r, 0, 2, P, P.copy(), Q, Q.copy(), v, v.copy(),
                             v.copy(), v.copy(), 0.0, 0.1, 0.0, 0.0, use_bias)
                adagrad_epoch(u, i, r, 0, 2, P, Q, Q.copy(), v, v.copy(), v.copy(),
                              np.ones(1, dt), np.ones(1, dt), 0.0, 0.1, 0.0, 0.0,
                              use_bias, 1e-8)
                adagrad_epoch_pq(u, i, r, 0, 2, P, P.copy(), Q, Q.copy(), v,
                                 v.copy(), v.copy(), v.copy(), np.ones(1, dt),
                                 np.ones(1, dt), 0.0, 0.1, 0.0, 0.0, use_bias, 1e-8)
                sum_squared_error(u, i, r, P, Q, v, v, 0.0, use_bias)
                predict(u, i, P, Q, v, v, 0.0, use_bias, np.zeros(2, dt))
            squared_norm(P)
            squared_norm(v)
    step_size(0.1, 0, 100.0, 0.5)
    try:
        from jobs.data import ratings as _ratings
    except ImportError:  # pragma: no cover - kernels used without the jobs package
        return
    _ratings.warmup()
