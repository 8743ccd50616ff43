"""LDA kernels (kernels/lda.py) against the exact collapsed conditional and the
NumPy reference (kernels/lda_reference.py).  No MPI."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.stats import chisquare

from kernels import lda as L
from kernels import lda_reference as R
from jobs.data.corpus import synthetic_corpus

ALPHA, BETA = 0.3, 0.1


def _tiny(seed=0, V=6, K=4, lens=(5, 3, 6, 4)):
    rng = np.random.default_rng(seed)
    doc_ptr = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
    words = rng.integers(0, V, size=doc_ptr[-1]).astype(np.int32)
    z = rng.integers(0, K, size=doc_ptr[-1]).astype(np.int32)
    return doc_ptr, words, z


def _replica(words, z, V, K, rng, stale=True):
    """Replica = own counts + other workers' counts (+ one transiently
    negative entry); delta = some pending own increments."""
    nwk = np.zeros((V, K), np.int32)
    np.add.at(nwk, (words, z), 1)
    if stale:
        nwk += rng.integers(0, 3, size=(V, K)).astype(np.int32)
        nwk[words[0], (z[0] + 1) % K] = -1     # stale, negative: must be clamped
    nk = nwk.sum(axis=0).astype(np.int32)
    nwk_d = np.zeros_like(nwk)
    nk_d = np.zeros_like(nk)
    if stale:
        nwk_d += rng.integers(-1, 2, size=(V, K)).astype(np.int32)
        nk_d = nwk_d.sum(axis=0).astype(np.int32)
    return nwk, nk, nwk_d, nk_d


def _exact_conditional(doc_ptr, words, z, i, nwk, nk, K, alpha, beta):
    d = int(np.searchsorted(doc_ptr, i, side="right") - 1)
    ndk = np.bincount(z[doc_ptr[d]:doc_ptr[d + 1]], minlength=K).astype(np.int64)
    w, s = words[i], z[i]
    ndk[s] -= 1
    nwr = nwk[w].astype(np.int64).copy()
    nwr[s] -= 1
    nkr = nk.astype(np.int64).copy()
    nkr[s] -= 1
    return R.conditional(ndk, nwr, nkr, alpha, beta, nwk.shape[0])


def _chi2_p(draws, p, K):
    obs = np.bincount(draws, minlength=K)
    return chisquare(obs, p * obs.sum()).pvalue


# ---------------------------------------------------------------- RNG

def test_rng_is_reproducible_and_checkpointable():
    a = L.rng_init(7)
    b = L.rng_init(7)
    assert a.dtype == np.uint64 and a.shape == (1,)
    x = L.rng_uniform(a, 1000)
    saved = a.copy()
    y = L.rng_uniform(a, 10)
    assert np.array_equal(x, L.rng_uniform(b, 1000))
    assert np.array_equal(y, L.rng_uniform(saved, 10))
    assert 0 <= x.min() and x.max() < 1 and abs(x.mean() - 0.5) < 0.03
    assert L.rng_init(7, 1)[0] != L.rng_init(7, 0)[0] != L.rng_init(8, 0)[0]


# ---------------------------------------------------------------- per-token draws

def _sparse_draws(doc_ptr, words, z, i, nwk, nk, nwk_d, nk_d, n, seed=1):
    wl = L.sparse_prepare(nwk, words, 0, len(words))
    return L.sparse_token_draws(doc_ptr, words, z, i, n, nwk, nk, nwk_d, nk_d,
                                ALPHA, BETA, *wl, L.rng_init(seed))


def _dense_draws(doc_ptr, words, z, i, nwk, nk, nwk_d, nk_d, n, seed=1):
    return L.dense_token_draws(doc_ptr, words, z, i, n, nwk, nk, nwk_d, nk_d, ALPHA, BETA,
                               L.rng_init(seed))


def _mh_draws(doc_ptr, words, z, i, nwk, nk, nwk_d, nk_d, n, steps=6, seed=1):
    V, K = nwk.shape
    al = L.alias_alloc(V, K)
    assert L.alias_build(nwk, nk, nwk_d, nk_d, BETA, *al)
    return L.mh_token_draws(doc_ptr, words, z, i, n, nwk, nk, nwk_d, nk_d, ALPHA, BETA,
                            steps, *al, L.rng_init(seed))


@pytest.mark.parametrize("sampler", ["sparse", "alias", "dense"])
@pytest.mark.parametrize("token", [0, 7, 16])
def test_token_draws_match_exact_conditional(sampler, token):
    V, K = 6, 4
    doc_ptr, words, z = _tiny()
    nwk, nk, nwk_d, nk_d = _replica(words, z, V, K, np.random.default_rng(5))
    p = _exact_conditional(doc_ptr, words, z, token, nwk, nk, K, ALPHA, BETA)
    before = (nwk.copy(), nk.copy(), z.copy())
    f = {"sparse": _sparse_draws, "alias": _mh_draws, "dense": _dense_draws}[sampler]
    draws = f(doc_ptr, words, z, token, nwk, nk, nwk_d, nk_d, 40000)
    assert _chi2_p(draws, p, K) > 1e-4
    # only token `token` moved, and the replica moved with it
    assert np.array_equal(np.delete(z, token), np.delete(before[2], token))
    moved = np.zeros_like(nwk)
    moved[words[token], before[2][token]] -= 1
    moved[words[token], z[token]] += 1
    assert np.array_equal(nwk - before[0], moved)
    assert np.array_equal(nk - before[1], moved.sum(0))


@pytest.mark.parametrize("sampler", ["sparse", "alias", "dense"])
def test_chi_square_detects_a_wrong_conditional(sampler):
    """The test above can fail: the same draws against a slightly wrong
    conditional (alpha doubled) are rejected."""
    V, K = 6, 4
    doc_ptr, words, z = _tiny()
    nwk, nk, nwk_d, nk_d = _replica(words, z, V, K, np.random.default_rng(5))
    wrong = _exact_conditional(doc_ptr, words, z, 7, nwk, nk, K, 2 * ALPHA, BETA)
    f = {"sparse": _sparse_draws, "alias": _mh_draws, "dense": _dense_draws}[sampler]
    draws = f(doc_ptr, words, z, 7, nwk, nk, nwk_d, nk_d, 40000)
    assert _chi2_p(draws, wrong, K) < 1e-6


@pytest.mark.parametrize("sampler", ["sparse", "alias", "dense"])
@pytest.mark.parametrize("K", [13, 21])
def test_token_draws_match_exact_conditional_many_topics(sampler, K):
    """K above the dense sampler's 8 SIMD lanes and not a multiple of 8: the
    two-level draw (lane, then topic in the lane) and its zero padding are
    exercised; the word has a few topics far more likely than the rest."""
    V = 6
    doc_ptr, words, z = _tiny(seed=4, V=V, K=K, lens=(9, 7, 12))
    rng = np.random.default_rng(6)
    nwk, nk, nwk_d, nk_d = _replica(words, z, V, K, rng)
    nwk[words[10], [2, 9, K - 1]] += 40          # peaked row, incl. the last (padded) lane
    nk = nk + (nwk.sum(0) - nk)
    p = _exact_conditional(doc_ptr, words, z, 10, nwk, nk, K, ALPHA, BETA)
    f = {"sparse": _sparse_draws, "alias": _mh_draws, "dense": _dense_draws}[sampler]
    draws = f(doc_ptr, words, z, 10, nwk, nk, nwk_d, nk_d, 60000)
    assert _chi2_p(draws, p, K) > 1e-4
    wrong = p.copy()
    lo = int(np.argmin(p))
    wrong[[9, lo]] = wrong[[lo, 9]]                # a likely and an unlikely topic swapped
    assert _chi2_p(draws, wrong, K) < 1e-6


def test_mh_with_stale_proposal_counts_is_still_exact():
    """Alias tables built from a replica whose pending deltas are large: the
    proposal is far from the target, the chain must still target it."""
    V, K = 6, 4
    doc_ptr, words, z = _tiny(seed=3)
    rng = np.random.default_rng(9)
    nwk, nk, _, _ = _replica(words, z, V, K, rng, stale=False)
    nwk_d = rng.integers(0, 4, size=(V, K)).astype(np.int32)  # base = nwk - delta differs a lot
    nwk = nwk + nwk_d
    nk_d = nwk_d.sum(0).astype(np.int32)
    nk = nwk.sum(0).astype(np.int32)
    p = _exact_conditional(doc_ptr, words, z, 9, nwk, nk, K, ALPHA, BETA)
    draws = _mh_draws(doc_ptr, words, z, 9, nwk, nk, nwk_d, nk_d, 40000)
    assert _chi2_p(draws, p, K) > 1e-4


# ---------------------------------------------------------------- long-run marginals

def _run_chain(sampler, doc_ptr, words, V, K, sweeps, seed=3):
    z = np.zeros(len(words), np.int32)
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    nwk_d = np.zeros_like(nwk)
    nk_d = np.zeros_like(nk)
    st = L.rng_init(seed)
    L.init_assignments(words, z, K, nwk, nk, nwk_d, nk_d, st)
    D = len(doc_ptr) - 1
    al = L.alias_alloc(V, K)
    freq = np.zeros((len(words), K))
    for it in range(sweeps):
        nwk_d[:] = 0     # "pushed"
        nk_d[:] = 0
        if sampler == "sparse":
            wl = L.sparse_prepare(nwk, words, 0, len(words))
            L.sparse_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, *wl, st)
        elif sampler == "dense":
            L.dense_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, st)
        else:
            assert L.alias_build(nwk, nk, nwk_d, nk_d, BETA, *al)
            L.mh_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, 1, *al, st)
        if it >= 200:
            freq[np.arange(len(words)), z] += 1
    return freq / freq.sum(1, keepdims=True)


def test_long_run_marginals_match_exact_posterior():
    V, K = 3, 3
    doc_ptr = np.array([0, 3, 5, 7], np.int64)
    words = np.array([0, 0, 1, 2, 2, 0, 1], np.int32)
    exact = R.exact_posterior_marginals(doc_ptr, words, V, K, ALPHA, BETA)
    for sampler in ("sparse", "alias", "dense"):
        est = _run_chain(sampler, doc_ptr, words, V, K, 60000)
        err = np.abs(est - exact).max()
        assert err < 0.02, (sampler, err)


def test_reference_sampler_marginals():
    V, K = 3, 2
    doc_ptr = np.array([0, 2, 4], np.int64)
    words = np.array([0, 1, 1, 2], np.int32)
    exact = R.exact_posterior_marginals(doc_ptr, words, V, K, ALPHA, BETA)
    rng = np.random.default_rng(0)
    z = rng.integers(0, K, 4)
    ndk, nwk, nk = R.counts_from_assignments(doc_ptr, words, z, V, K)
    freq = np.zeros((4, K))
    for it in range(6000):
        R.gibbs_sweep(doc_ptr, words, z, ndk, nwk, nk, ALPHA, BETA, rng)
        if it >= 100:
            freq[np.arange(4), z] += 1
    assert np.abs(freq / freq.sum(1, keepdims=True) - exact).max() < 0.03


# ---------------------------------------------------------------- deltas, counts

@pytest.mark.parametrize("sampler", ["sparse", "alias", "dense"])
def test_deltas_equal_total_change_of_replicas(sampler):
    c, _, _ = synthetic_corpus(n_docs=60, n_words=50, n_topics=5, doc_length=30, seed=2)
    V, K, D = c.n_words, 7, c.n_docs
    rng = np.random.default_rng(1)
    z = np.zeros(c.n_tokens, np.int32)
    nwk = rng.integers(0, 4, size=(V, K)).astype(np.int32)  # other workers' counts
    nk = nwk.sum(0).astype(np.int32)
    nwk_d = np.zeros_like(nwk)
    nk_d = np.zeros_like(nk)
    st = L.rng_init(4)
    L.init_assignments(c.words, z, K, nwk, nk, nwk_d, nk_d, st)
    nwk0, nk0 = nwk - nwk_d, nk - nk_d
    al = L.alias_alloc(V, K)
    for _ in range(5):
        if sampler == "sparse":
            wl = L.sparse_prepare(nwk, c.words, 0, c.n_tokens)
            L.sparse_sweep(c.doc_ptr, c.words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, *wl, st)
        elif sampler == "dense":
            L.dense_sweep(c.doc_ptr, c.words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, st)
        else:
            L.alias_build(nwk, nk, nwk_d, nk_d, BETA, *al)
            L.mh_sweep(c.doc_ptr, c.words, z, 0, D, nwk, nk, nwk_d, nk_d, ALPHA, BETA, 2, *al, st)
    assert np.array_equal(nwk - nwk0, nwk_d)
    assert np.array_equal(nk - nk0, nk_d)
    own = np.zeros_like(nwk)
    L.add_counts(c.words, z, own, np.zeros(K, np.int32), 1)
    assert np.array_equal(nwk_d, own)         # delta = own tokens' counts (from empty)
    assert np.array_equal(nk, nwk.sum(0))
    assert np.array_equal(L.doc_topic_counts(c.doc_ptr, z, K).sum(0), nk_d)


def test_partial_sweep_touches_only_its_documents():
    c, _, _ = synthetic_corpus(n_docs=20, n_words=30, n_topics=3, doc_length=20, seed=5)
    V, K = c.n_words, 4
    z = np.zeros(c.n_tokens, np.int32)
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    nwk_d, nk_d = np.zeros_like(nwk), np.zeros_like(nk)
    st = L.rng_init(1)
    L.init_assignments(c.words, z, K, nwk, nk, nwk_d, nk_d, st)
    z0 = z.copy()
    al = L.alias_alloc(V, K)
    L.alias_build(nwk, nk, nwk_d, nk_d, BETA, *al)
    for _ in range(3):
        L.mh_sweep(c.doc_ptr, c.words, z, 5, 9, nwk, nk, nwk_d, nk_d, ALPHA, BETA, 2, *al, st)
    lo, hi = c.doc_ptr[5], c.doc_ptr[9]
    assert np.array_equal(z[:lo], z0[:lo]) and np.array_equal(z[hi:], z0[hi:])
    assert not np.array_equal(z[lo:hi], z0[lo:hi])


def test_same_seed_same_result():
    c, _, _ = synthetic_corpus(n_docs=30, n_words=40, n_topics=3, doc_length=20, seed=6)
    outs = []
    for _ in range(2):
        V, K = c.n_words, 5
        z = np.zeros(c.n_tokens, np.int32)
        nwk = np.zeros((V, K), np.int32)
        nk = np.zeros(K, np.int32)
        nwk_d, nk_d = np.zeros_like(nwk), np.zeros_like(nk)
        st = L.rng_init(11)
        L.init_assignments(c.words, z, K, nwk, nk, nwk_d, nk_d, st)
        al = L.alias_alloc(V, K)
        for _ in range(3):
            L.alias_build(nwk, nk, nwk_d, nk_d, BETA, *al)
            L.mh_sweep(c.doc_ptr, c.words, z, 0, c.n_docs, nwk, nk, nwk_d, nk_d,
                       ALPHA, BETA, 2, *al, st)
            wl = L.sparse_prepare(nwk, c.words, 0, c.n_tokens)
            L.sparse_sweep(c.doc_ptr, c.words, z, 0, c.n_docs, nwk, nk, nwk_d, nk_d,
                           ALPHA, BETA, *wl, st)
        outs.append((z.copy(), st.copy()))
    assert np.array_equal(outs[0][0], outs[1][0]) and outs[0][1][0] == outs[1][1][0]


def test_alias_capacity_too_small_is_reported():
    V, K = 4, 3
    nwk = np.ones((V, K), np.int32)
    al = L.alias_alloc(V, K, capacity=5)
    assert not L.alias_build(nwk, nwk.sum(0).astype(np.int32), np.zeros_like(nwk),
                             np.zeros(K, np.int32), BETA, *al)


# ---------------------------------------------------------------- log-likelihood

def _ll_total(doc_ptr, words, z, V, K, alpha, beta, nwk=None, nk=None):
    if nwk is None:
        nwk = np.zeros((V, K), np.int32)
        nk = np.zeros(K, np.int32)
        L.add_counts(words, z, nwk, nk, 1)
    return (L.loglik_words(nwk, np.arange(V), beta) + L.loglik_topics(nk, V, beta)
            + L.loglik_docs(doc_ptr, z, K, alpha))


@pytest.mark.parametrize("alpha,beta", [(0.1, 0.01), (0.5, 0.2)])
def test_loglik_equals_reference(alpha, beta):
    c, _, _ = synthetic_corpus(n_docs=40, n_words=60, n_topics=4, doc_length=50, seed=8)
    K = 6
    z = np.random.default_rng(0).integers(0, K, c.n_tokens).astype(np.int32)
    ref = R.loglik(c.doc_ptr, c.words, z, c.n_words, K, alpha, beta)
    got = L.ll_to_float(_ll_total(c.doc_ptr, c.words, z, c.n_words, K, alpha, beta))
    assert got == pytest.approx(ref, rel=1e-11, abs=1e-5)


def test_loglik_large_counts_use_the_exact_path():
    doc_ptr = np.array([0, 5000], np.int64)
    words = np.zeros(5000, np.int32)
    z = np.zeros(5000, np.int32)
    ref = R.loglik(doc_ptr, words, z, 3, 2, 0.1, 0.01)
    got = L.ll_to_float(_ll_total(doc_ptr, words, z, 3, 2, 0.1, 0.01))
    assert got == pytest.approx(ref, abs=1e-6)  # fixed point: 2**-28 per term


def test_loglik_partial_sums_add_up_exactly():
    """Split rows and documents among 'workers' in any way: the int64 partial
    sums add up to exactly the same total."""
    c, _, _ = synthetic_corpus(n_docs=50, n_words=80, n_topics=4, doc_length=40, seed=9)
    V, K = c.n_words, 5
    z = np.random.default_rng(1).integers(0, K, c.n_tokens).astype(np.int32)
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    L.add_counts(c.words, z, nwk, nk, 1)
    whole = _ll_total(c.doc_ptr, c.words, z, V, K, ALPHA, BETA, nwk, nk)
    rng = np.random.default_rng(2)
    for n_workers in (2, 3, 7):
        owner = rng.integers(0, n_workers, V)
        bounds = np.sort(rng.choice(np.arange(1, c.n_docs), n_workers - 1, replace=False))
        bounds = np.concatenate(([0], bounds, [c.n_docs]))
        parts = [L.loglik_words(nwk, np.nonzero(owner == r)[0], BETA) for r in range(n_workers)]
        for r in range(n_workers):
            sub = c.subset(bounds[r], bounds[r + 1])
            lo, hi = c.doc_ptr[bounds[r]], c.doc_ptr[bounds[r + 1]]
            parts.append(L.loglik_docs(sub.doc_ptr, z[lo:hi], K, ALPHA))
        parts.append(L.loglik_topics(nk, V, BETA))
        assert sum(int(p) for p in reversed(parts)) == int(whole)


# ---------------------------------------------------------------- topic recovery

@pytest.mark.parametrize("sampler", ["sparse", "alias"])
def test_recovers_true_topics(sampler):
    """On a corpus drawn from LDA's generative process, the estimated topics
    (phi) matched to the true ones by the Hungarian assignment are within a
    mean total-variation distance of 0.08 and the worst within 0.12 (seen:
    about 0.035 and 0.045 for both samplers)."""
    K = 6
    c, phi, _ = synthetic_corpus(n_docs=800, n_words=300, n_topics=K, doc_length=100,
                                 alpha=0.3, beta=0.05, seed=12)
    V = c.n_words
    z = np.zeros(c.n_tokens, np.int32)
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    nwk_d, nk_d = np.zeros_like(nwk), np.zeros_like(nk)
    st = L.rng_init(21)
    L.init_assignments(c.words, z, K, nwk, nk, nwk_d, nk_d, st)
    al = L.alias_alloc(V, K)
    for _ in range(150):
        nwk_d[:] = 0
        nk_d[:] = 0
        if sampler == "sparse":
            wl = L.sparse_prepare(nwk, c.words, 0, c.n_tokens)
            L.sparse_sweep(c.doc_ptr, c.words, z, 0, c.n_docs, nwk, nk, nwk_d, nk_d,
                           0.1, 0.01, *wl, st)
        else:
            L.alias_build(nwk, nk, nwk_d, nk_d, 0.01, *al)
            L.mh_sweep(c.doc_ptr, c.words, z, 0, c.n_docs, nwk, nk, nwk_d, nk_d,
                       0.1, 0.01, 2, *al, st)
    est = ((nwk + 0.01) / (nk + V * 0.01)).T          # K x V
    tv = 0.5 * np.abs(phi[:, None, :] - est[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(tv)
    d = tv[rows, cols]
    assert d.mean() < 0.08 and d.max() < 0.12, d
