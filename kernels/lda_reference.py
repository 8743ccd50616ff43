"""Plain NumPy collapsed Gibbs sampler for LDA: the oracle and the baseline.

O(K) per token, written for clarity, not speed.  Same token layout as
``kernels.lda`` (``doc_ptr``, ``words``, ``z``) and the same counts convention:
probabilities use counts clamped at zero.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

__all__ = ["conditional", "gibbs_sweep", "counts_from_assignments", "loglik",
           "exact_posterior_marginals"]


def counts_from_assignments(doc_ptr, words, z, n_words, n_topics):
    """(ndk D x K, nwk V x K, nk K) from the assignments."""
    n_docs = len(doc_ptr) - 1
    doc_of = np.repeat(np.arange(n_docs), np.diff(doc_ptr))
    ndk = np.zeros((n_docs, n_topics), dtype=np.int64)
    nwk = np.zeros((n_words, n_topics), dtype=np.int64)
    np.add.at(ndk, (doc_of, z), 1)
    np.add.at(nwk, (words, z), 1)
    return ndk, nwk, nwk.sum(axis=0)


def conditional(ndk_row, nwk_row, nk, alpha, beta, n_words):
    """p(z_i = k | rest) for counts that already exclude token i."""
    p = ((np.maximum(ndk_row, 0) + alpha) * (np.maximum(nwk_row, 0) + beta)
         / (np.maximum(nk, 0) + n_words * beta))
    return p / p.sum()


def gibbs_sweep(doc_ptr, words, z, ndk, nwk, nk, alpha, beta, rng):
    """One sweep of the exact sampler, in place (``rng``: numpy Generator)."""
    n_words = nwk.shape[0]
    for d in range(len(doc_ptr) - 1):
        for i in range(doc_ptr[d], doc_ptr[d + 1]):
            w, s = words[i], z[i]
            ndk[d, s] -= 1
            nwk[w, s] -= 1
            nk[s] -= 1
            p = conditional(ndk[d], nwk[w], nk, alpha, beta, n_words)
            t = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
            t = min(t, len(p) - 1)
            z[i] = t
            ndk[d, t] += 1
            nwk[w, t] += 1
            nk[t] += 1


def loglik(doc_ptr, words, z, n_words, n_topics, alpha, beta):
    """Complete-data log p(w, z) (float64)."""
    ndk, nwk, nk = counts_from_assignments(doc_ptr, words, z, n_words, n_topics)
    nd = np.diff(doc_ptr)
    lw = (n_topics * (gammaln(n_words * beta) - n_words * gammaln(beta))
          + gammaln(nwk + beta).sum() - gammaln(nk + n_words * beta).sum())
    ld = (len(nd) * (gammaln(n_topics * alpha) - n_topics * gammaln(alpha))
          + gammaln(ndk + alpha).sum() - gammaln(nd + n_topics * alpha).sum())
    return float(lw + ld)


def exact_posterior_marginals(doc_ptr, words, n_words, n_topics, alpha, beta):
    """p(z_i = k | w) by enumerating all K^N assignments (tiny corpora only)."""
    n = len(words)
    if n_topics ** n > 2_000_000:
        raise ValueError("too many assignments to enumerate")
    grids = np.array(np.meshgrid(*[np.arange(n_topics)] * n, indexing="ij")).reshape(n, -1).T
    lls = np.array([loglik(doc_ptr, words, g, n_words, n_topics, alpha, beta) for g in grids])
    p = np.exp(lls - lls.max())
    p /= p.sum()
    marg = np.zeros((n, n_topics))
    for i in range(n):
        np.add.at(marg[i], grids[:, i], p)
    return marg
