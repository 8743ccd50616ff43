"""kernels.mf against its NumPy reference, the delta-buffer convention,
the tile ordering and convergence on planted data.  No MPI."""
import numpy as np
import pytest

from kernels import mf as K
from kernels import mf_reference as R
from jobs.data.ratings import synthetic_ratings, train_test_split

VARIANTS = ["sgd", "sgd_pq", "adagrad", "adagrad_pq"]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-12)}


def _problem(seed=0, nu=40, ni=25, n=600, k=7, dt=np.float32):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    r = rng.normal(3.0, 1.0, n).astype(dt)
    return u, i, r, nu, ni, k


def _state(nu, ni, k, dt, seed=1):
    rng = np.random.default_rng(seed)
    return dict(
        P=K.init_factors(nu, k, seed, dtype=dt), Q=K.init_factors(ni, k, seed + 1, dtype=dt),
        Pd=np.zeros((nu, k), dt), Qd=np.zeros((ni, k), dt),
        bu=rng.normal(0, 0.1, nu).astype(dt), bi=rng.normal(0, 0.1, ni).astype(dt),
        bud=np.zeros(nu, dt), bid=np.zeros(ni, dt),
        Gp=np.ones(nu, dt), Gq=np.ones(ni, dt))


def _call(M, variant, u, i, r, lo, hi, s, mu, lr, reg, regb, use_bias):
    if variant == "sgd":
        return M.sgd_epoch(u, i, r, lo, hi, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"],
                           s["bid"], mu, lr, reg, regb, use_bias)
    if variant == "sgd_pq":
        return M.sgd_epoch_pq(u, i, r, lo, hi, s["P"], s["Pd"], s["Q"], s["Qd"], s["bu"],
                              s["bud"], s["bi"], s["bid"], mu, lr, reg, regb, use_bias)
    if variant == "adagrad":
        return M.adagrad_epoch(u, i, r, lo, hi, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"],
                               s["bid"], s["Gp"], s["Gq"], mu, lr, reg, regb, use_bias, 1e-8)
    return M.adagrad_epoch_pq(u, i, r, lo, hi, s["P"], s["Pd"], s["Q"], s["Qd"], s["bu"],
                              s["bud"], s["bi"], s["bid"], s["Gp"], s["Gq"], mu, lr, reg,
                              regb, use_bias, 1e-8)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_kernel_equals_reference(variant, use_bias, dt):
    u, i, r, nu, ni, k = _problem(dt=dt)
    sk, sr = _state(nu, ni, k, dt), _state(nu, ni, k, dt)
    for epoch in range(3):
        lr = K.step_size(0.05, epoch, 1.0, 0.5)
        assert lr == pytest.approx(R.step_size(0.05, epoch, 1.0, 0.5))
        a = _call(K, variant, u, i, r, 0, len(r), sk, 3.0, lr, 0.05, 0.01, use_bias)
        b = _call(R, variant, u, i, r, 0, len(r), sr, 3.0, lr, 0.05, 0.01, use_bias)
        assert a == pytest.approx(b, rel=TOL[dt]["rtol"] * 10)
    for name in sk:
        assert sk[name].dtype == dt, name
        np.testing.assert_allclose(sk[name], sr[name], err_msg=name, **TOL[dt])
    # something actually changed (the comparison is not between two no-ops)
    assert np.abs(sk["Q"] - _state(nu, ni, k, dt)["Q"]).max() > 1e-3
    if not use_bias:
        np.testing.assert_array_equal(sk["bu"], _state(nu, ni, k, dt)["bu"])
        np.testing.assert_array_equal(sk["bid"], 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_delta_buffers_hold_the_total_change(variant):
    dt = np.float64
    u, i, r, nu, ni, k = _problem(seed=3, dt=dt)
    s = _state(nu, ni, k, dt)
    # deltas start non-zero: the kernel must add to them, not overwrite
    s["Qd"][:] = 0.25
    s["bid"][:] = -0.5
    s["Pd"][:] = 0.125
    s["bud"][:] = 2.0
    before = {n: a.copy() for n, a in s.items()}
    for epoch in range(2):
        _call(K, variant, u, i, r, 0, len(r), s, 3.0, 0.03, 0.05, 0.01, True)
    np.testing.assert_allclose(s["Qd"] - before["Qd"], s["Q"] - before["Q"], atol=1e-12)
    np.testing.assert_allclose(s["bid"] - before["bid"], s["bi"] - before["bi"], atol=1e-12)
    assert np.abs(s["Q"] - before["Q"]).max() > 1e-3
    if variant.endswith("_pq"):
        np.testing.assert_allclose(s["Pd"] - before["Pd"], s["P"] - before["P"], atol=1e-12)
        np.testing.assert_allclose(s["bud"] - before["bud"], s["bu"] - before["bu"],
                                   atol=1e-12)
    else:  # P and bu are local: no delta written
        np.testing.assert_array_equal(s["Pd"], before["Pd"])
        np.testing.assert_array_equal(s["bud"], before["bud"])
        assert np.abs(s["P"] - before["P"]).max() > 1e-3


def test_range_lo_hi_touches_only_those_ratings():
    dt = np.float32
    u, i, r, nu, ni, k = _problem(seed=5, n=200, dt=dt)
    s = _state(nu, ni, k, dt)
    before = {n: a.copy() for n, a in s.items()}
    lo, hi = 50, 80
    sse = K.sgd_epoch(u, i, r, lo, hi, s["P"], s["Q"], s["Qd"], s["bu"], s["bi"], s["bid"],
                      3.0, 0.05, 0.05, 0.01, True)
    touched_u = set(u[lo:hi].tolist())
    touched_i = set(i[lo:hi].tolist())
    for row in range(nu):
        same = np.array_equal(s["P"][row], before["P"][row])
        assert same == (row not in touched_u), row
    for row in range(ni):
        same = np.array_equal(s["Q"][row], before["Q"][row])
        assert same == (row not in touched_i), row
    ref = _state(nu, ni, k, dt)
    want = R.sgd_epoch(u, i, r, lo, hi, ref["P"], ref["Q"], ref["Qd"], ref["bu"], ref["bi"],
                       ref["bid"], 3.0, 0.05, 0.05, 0.01, True)
    assert sse == pytest.approx(want, rel=1e-4)


def test_evaluation_matches_reference():
    dt = np.float32
    u, i, r, nu, ni, k = _problem(seed=7, dt=dt)
    s = _state(nu, ni, k, dt)
    for use_bias in (True, False):
        out = np.empty(len(r), dt)
        K.predict(u, i, s["P"], s["Q"], s["bu"], s["bi"], 3.0, use_bias, out)
        want = R.predict(u, i, s["P"], s["Q"], s["bu"], s["bi"], 3.0, use_bias)
        np.testing.assert_allclose(out, want, rtol=1e-5)
        a = K.objective(u, i, r, s["P"], s["Q"], s["bu"], s["bi"], 3.0, 0.05, 0.01, use_bias)
        b = R.objective(u, i, r, s["P"], s["Q"], s["bu"], s["bi"], 3.0, 0.05, 0.01, use_bias)
        assert a[0] == pytest.approx(b[0], rel=1e-5)
        assert a[1] == pytest.approx(b[1], rel=1e-5)
    # a hand-computed case
    P = np.array([[1.0, 2.0]], dt)
    Q = np.array([[3.0, -1.0]], dt)
    z = np.zeros(1, np.int32)
    sse = K.sum_squared_error(z, z, np.array([4.0], dt), P, Q, np.array([0.5], dt),
                              np.array([0.25], dt), 1.0, True)
    assert sse == pytest.approx((4.0 - (1.0 + 0.5 + 0.25 + 1.0)) ** 2)
    assert K.squared_norm(P) == pytest.approx(5.0)


def test_step_size_schedule():
    assert K.step_size(0.1, 0, 100.0, 0.5) == pytest.approx(0.01)
    assert K.step_size(0.1, 21, 4.0, 1.0) == pytest.approx(0.1 / 25)
    assert K.step_size(0.3, 17, 100.0, 0.0) == pytest.approx(0.3)
    assert K.step_size(0.1, 5, 1.0, 0.5) < K.step_size(0.1, 4, 1.0, 0.5)


def test_adagrad_accumulators_and_step():
    # one rating, k=2, worked by hand
    dt = np.float64
    P = np.array([[1.0, 0.0]], dt)
    Q = np.array([[0.5, 2.0]], dt)
    Qd = np.zeros_like(Q)
    Gp = np.ones(1, dt)
    Gq = np.ones(1, dt)
    z = np.zeros(1, np.int32)
    e = 3.0 - 0.5
    gp = np.array([e * 0.5, e * 2.0])
    gq = np.array([e * 1.0, 0.0])
    K.adagrad_epoch(z, z, np.array([3.0]), 0, 1, P, Q, Qd, np.zeros(1), np.zeros(1),
                    np.zeros(1), Gp, Gq, 0.0, 0.1, 0.0, 0.0, False, 0.0)
    assert Gp[0] == pytest.approx(1 + gp @ gp / 2)
    assert Gq[0] == pytest.approx(1 + gq @ gq / 2)
    # this step used the accumulators as they were before the rating (1.0)
    np.testing.assert_allclose(P[0], [1.0, 0.0] + 0.1 * gp)
    np.testing.assert_allclose(Q[0], [0.5, 2.0] + 0.1 * gq)
    np.testing.assert_allclose(Qd[0], 0.1 * gq)
    # the next rating's step is scaled by the grown accumulators
    P0, Q0, G0 = P.copy(), Q.copy(), Gp[0]
    K.adagrad_epoch(z, z, np.array([3.0]), 0, 1, P, Q, Qd, np.zeros(1), np.zeros(1),
                    np.zeros(1), Gp, Gq, 0.0, 0.1, 0.0, 0.0, False, 0.0)
    e2 = 3.0 - P0[0] @ Q0[0]
    np.testing.assert_allclose(P[0], P0[0] + 0.1 * e2 * Q0[0] / np.sqrt(G0))


@pytest.mark.parametrize("user_block,seed", [(None, None), (7, None), (7, 3)])
def test_block_order_groups_ratings_into_sorted_tiles(user_block, seed):
    rng = np.random.default_rng(11)
    nu, ni, n, ib = 50, 40, 3000, 9
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    perm, ptr = K.block_order(u, i, nu, ni, ib, user_block, seed)
    assert np.array_equal(np.sort(perm), np.arange(n))
    ub = nu if user_block is None else user_block
    n_tiles = -(-ni // ib) * -(-nu // ub)
    assert len(ptr) == n_tiles + 1 and ptr[0] == 0 and ptr[-1] == n
    up, ip = u[perm], i[perm]
    seen = set()
    for t in range(n_tiles):
        a, b = ptr[t], ptr[t + 1]
        if a == b:
            continue
        tiles = set(zip((up[a:b] // ub).tolist(), (ip[a:b] // ib).tolist()))
        assert len(tiles) == 1, "a tile mixes blocks"
        assert tiles.isdisjoint(seen)
        seen |= tiles
        key = up[a:b].astype(np.int64) * ni + ip[a:b]
        assert np.all(np.diff(key) >= 0), "ratings in a tile are not sorted by user, item"
    order = [next(iter(set(zip((up[ptr[t]:ptr[t + 1]] // ub).tolist(),
                               (ip[ptr[t]:ptr[t + 1]] // ib).tolist()))))
             for t in range(n_tiles) if ptr[t + 1] > ptr[t]]
    if seed is None:
        assert order == sorted(order)
    else:
        assert order != sorted(order)
        perm2, _ = K.block_order(u, i, nu, ni, ib, user_block, seed)
        assert np.array_equal(perm, perm2)


def test_auto_item_block_fits_half_of_l2():
    assert K.auto_item_block(32, 4, 512 * 1024) * 32 * 4 * 2 <= 256 * 1024
    assert K.auto_item_block(100, 4) < K.auto_item_block(32, 4)
    assert K.auto_item_block(32, 8) < K.auto_item_block(32, 4)


def test_init_factors_deterministic_and_typed():
    a = K.init_factors(10, 4, 5)
    b = K.init_factors(10, 4, 5)
    c = K.init_factors(10, 4, 6, dtype=np.float64)
    assert a.dtype == np.float32 and c.dtype == np.float64 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("adagrad", [False, True])
def test_sgd_reaches_noise_level_on_planted_data(adagrad):
    noise = 0.3
    d = synthetic_ratings(600, 400, 40000, rank=4, noise=noise, seed=1)
    tr, te = train_test_split(d, 0.1, 0)
    k = 8
    P, Q = K.init_factors(d.n_users, k, 1), K.init_factors(d.n_items, k, 2)
    Qd = np.zeros_like(Q)
    bu, bi = np.zeros(d.n_users, np.float32), np.zeros(d.n_items, np.float32)
    bid = np.zeros_like(bi)
    Gp, Gq = np.ones(d.n_users, np.float32), np.ones(d.n_items, np.float32)
    perm, _ = K.block_order(tr.users, tr.items, d.n_users, d.n_items, 64, 100)
    u, i, r = tr.users[perm], tr.items[perm], tr.values[perm]
    mu = float(r.mean())

    def test_rmse():
        sse = K.sum_squared_error(te.users, te.items, te.values, P, Q, bu, bi, mu, True)
        return np.sqrt(sse / len(te))

    start = test_rmse()
    for ep in range(25):
        if adagrad:
            K.adagrad_epoch(u, i, r, 0, len(r), P, Q, Qd, bu, bi, bid, Gp, Gq, mu,
                            K.step_size(0.1, ep, 1.0, 0.3), 0.02, 0.01, True, 1e-8)
        else:
            K.sgd_epoch(u, i, r, 0, len(r), P, Q, Qd, bu, bi, bid, mu,
                        K.step_size(0.05, ep, 1.0, 0.3), 0.02, 0.01, True)
    end = test_rmse()
    assert start > 2.5 * noise
    assert end < 1.2 * noise, (start, end)


def test_aligned_helpers_and_kernel_on_unaligned_arrays():
    a = K.aligned_zeros((37, 32), np.float32)
    assert K.is_aligned(a) and a.flags.c_contiguous and a.shape == (37, 32) and not a.any()
    b = K.aligned_copy(np.arange(12.0).reshape(3, 4))
    assert K.is_aligned(b) and np.array_equal(b, np.arange(12.0).reshape(3, 4))
    assert K.is_aligned(K.init_factors(5, 3, 0))
    # alignment is a speed matter only: same results on offset (unaligned) arrays
    dt = np.float32
    u, i, r, nu, ni, k = _problem(seed=9, dt=dt)
    s1 = _state(nu, ni, k, dt)
    s2 = {n: a.copy() for n, a in s1.items()}
    buf = np.zeros(ni * k + 3, dt)
    s2["Q"] = buf[1:1 + ni * k].reshape(ni, k)
    s2["Q"][...] = s1["Q"]
    assert not K.is_aligned(s2["Q"])
    _call(K, "sgd", u, i, r, 0, len(r), s1, 3.0, 0.05, 0.05, 0.01, True)
    _call(K, "sgd", u, i, r, 0, len(r), s2, 3.0, 0.05, 0.05, 0.01, True)
    np.testing.assert_allclose(s1["Q"], s2["Q"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s1["P"], s2["P"], rtol=1e-6, atol=1e-7)
