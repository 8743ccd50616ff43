"""Plain NumPy reference of :mod:`kernels.mf` (test oracle, benchmark baseline).

Same updates, same order, same dtype as the Numba kernels; only the
rounding differs (the kernels are compiled with fastmath, which may
reassociate the dot products).  Slow: one Python iteration per rating.
"""
from __future__ import annotations

import numpy as np


def step_size(eta0, t, offset=100.0, power=0.5):
    """``eta0 * (offset + t) ** -power`` (same as kernels.mf.step_size)."""
    return eta0 * (offset + t) ** (-power)


def _epoch(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
           Gp, Gq, mu, lr, reg, reg_bias, eps, use_bias, p_delta, adagrad):
    dt = P.dtype.type
    k = P.shape[1]
    lr_, reg_, regb, mu_, eps_ = dt(lr), dt(reg), dt(reg_bias), dt(mu), dt(eps)
    inv_k = dt(1.0 / k)
    sse = 0.0
    for n in range(lo, hi):
        u = int(users[n])
        i = int(items[n])
        p = P[u].copy()
        q = Q[i].copy()
        s = (mu_ + bu[u] + bi[i]) if use_bias else dt(0)
        s = dt(s + np.dot(p, q))
        e = dt(ratings[n] - s)
        sse += float(e) * float(e)
        if adagrad:
            su = dt(lr_ / np.sqrt(Gp[u] + eps_))
            si = dt(lr_ / np.sqrt(Gq[i] + eps_))
            gp = e * q - reg_ * p
            gq = e * p - reg_ * q
            Gp[u] += np.dot(gp, gp) * inv_k
            Gq[i] += np.dot(gq, gq) * inv_k
            gp = su * gp
            gq = si * gq
        else:
            su = si = lr_
            gp = su * (e * q - reg_ * p)
            gq = si * (e * p - reg_ * q)
        P[u] = p + gp
        Q[i] = q + gq
        Qd[i] += gq
        if p_delta:
            Pd[u] += gp
        if use_bias:
            gbu = su * (e - regb * bu[u])
            bu[u] += gbu
            if p_delta:
                bud[u] += gbu
            gbi = si * (e - regb * bi[i])
            bi[i] += gbi
            bid[i] += gbi
    return sse


def sgd_epoch(users, items, ratings, lo, hi, P, Q, Qd, bu, bi, bid, mu, lr,
              reg, reg_bias=0.0, use_bias=True):
    return _epoch(users, items, ratings, lo, hi, P, None, Q, Qd, bu, None, bi,
                  bid, None, None, mu, lr, reg, reg_bias, 0.0, use_bias, False,
                  False)


def sgd_epoch_pq(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                 mu, lr, reg, reg_bias=0.0, use_bias=True):
    return _epoch(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                  None, None, mu, lr, reg, reg_bias, 0.0, use_bias, True, False)


def adagrad_epoch(users, items, ratings, lo, hi, P, Q, Qd, bu, bi, bid, Gp, Gq,
                  mu, lr, reg, reg_bias=0.0, use_bias=True, eps=1e-8):
    return _epoch(users, items, ratings, lo, hi, P, None, Q, Qd, bu, None, bi,
                  bid, Gp, Gq, mu, lr, reg, reg_bias, eps, use_bias, False, True)


def adagrad_epoch_pq(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi,
                     bid, Gp, Gq, mu, lr, reg, reg_bias=0.0, use_bias=True,
                     eps=1e-8):
    return _epoch(users, items, ratings, lo, hi, P, Pd, Q, Qd, bu, bud, bi, bid,
                  Gp, Gq, mu, lr, reg, reg_bias, eps, use_bias, True, True)


def predict(users, items, P, Q, bu, bi, mu, use_bias):
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    pred = np.einsum("nk,nk->n", P[users], Q[items])
    if use_bias:
        pred = pred + (P.dtype.type(mu) + bu[users] + bi[items])
    return pred.astype(P.dtype, copy=False)


def sum_squared_error(users, items, ratings, P, Q, bu, bi, mu, use_bias):
    e = np.asarray(ratings, dtype=np.float64) - predict(users, items, P, Q, bu,
                                                        bi, mu, use_bias)
    return float(np.dot(e, e))


def objective(users, items, ratings, P, Q, bu, bi, mu, reg, reg_bias=0.0,
              use_bias=True):
    sse = sum_squared_error(users, items, ratings, P, Q, bu, bi, mu, use_bias)
    sq = lambda a: float(np.sum(np.asarray(a, dtype=np.float64) ** 2))  # noqa: E731
    obj = sse + reg * (sq(P) + sq(Q))
    if use_bias:
        obj += reg_bias * (sq(bu) + sq(bi))
    return obj, sse
