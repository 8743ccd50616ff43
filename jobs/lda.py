"""LDA by collapsed Gibbs sampling on the SSP parameter server.

    mpiexec -n 4 python -m jobs.lda --data docword.kos.txt --vocab vocab.kos.txt -K 100
    mpiexec -n 3 python -m jobs.lda                      # built-in synthetic corpus

Model: word-topic counts ``nwk`` (V x K, int32) and topic totals ``nk``
(1 x K, int32) are parameter-server tables with staleness ``--staleness``;
documents are split across workers by token count; topic assignments and
document-topic counts stay on their worker.  One iteration is one sweep over
a worker's documents and one clock (clock 0 is the random initialisation).

Samplers (``--sampler``, kernels in ``kernels/lda.py``): ``alias`` --
Metropolis-Hastings with alias tables in the style of LightLDA, O(1) per
token whatever K; ``sparse`` -- SparseLDA (Yao et al. 2009); ``dense`` -- the
plain O(K) Gibbs sampler in one vectorised pass.  All target the exact
collapsed conditional given the worker's (stale) replica.  The default,
``auto``, runs ``dense`` for K <= 400 and ``alias`` above: at K = 100 dense
is 1.5-2x faster than alias/MH, whose log-likelihood after a given number
of iterations also lags (an MH step moves less than an exact draw when K is
small; it would need about 8 steps to come within 0.5%), while at K = 1000
alias/MH with 2 steps is as good per iteration and faster (measured with
``benchmarks.lda_kernel``; the rule is ``kernels.lda.auto_sampler``).

Log-likelihood: the complete-data log p(w, z), in exact fixed-point partial
sums (words: each worker sums a disjoint set of rows; documents: each worker
its own; topic totals: worker 0), recorded for the state at the start of each
iteration from each worker's replica (exact at s = 0, where every replica is
the same synchronised table) and exactly from the final tables at the end.

Input (``--format``): UCI bag-of-words (``docword.*.txt[.gz]`` + ``--vocab
vocab.*.txt``), LDA-C (``N id:count ...`` + ``--vocab``), plain text (one
document per line); see ``jobs/data/corpus.py``.  Without ``--data`` a
deterministic synthetic corpus drawn from LDA's generative process is used.

Outputs in ``--out``: ``summary.json``, ``metrics.jsonl`` (one record per
iteration), ``model.h5`` (nwk, nk, phi, theta, vocab) and ``topics.txt``
(top words of each topic).
"""

from __future__ import annotations

import math
import resource
import time

import numpy as np

from ssp_mpi import mpienv

mpienv.prepare()  # the MPI environment, before mpi4py.MPI is imported
from ssp_mpi import Session, TableSpec, agree, run_main
from ssp_mpi.cli import config_from_args, job_parser, nonneg_int, positive_float, positive_int
from ssp_mpi.errors import InputError
from ssp_mpi.output import OutputDir

from jobs.data import corpus as corpus_io
from kernels import lda as L

SAMPLERS = ("auto", "alias", "sparse", "dense")


# --------------------------------------------------------------------------- options

def build_parser():
    p = job_parser("ssp-mpi lda", "LDA by collapsed Gibbs sampling (dense, alias/MH or "
                                  "SparseLDA) on the SSP parameter server.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None,
                   help="corpus file (UCI docword.*.txt[.gz], LDA-C, or text one document per "
                        "line); default: the built-in synthetic corpus")
    g.add_argument("--vocab", default=None, help="vocabulary file, one word per line "
                                                 "(UCI vocab.*.txt or the LDA-C vocabulary)")
    g.add_argument("--format", default="auto", choices=["auto", "uci", "ldac", "text"],
                   help="input format; auto: UCI if the name contains 'docword', LDA-C for "
                        ".ldac/.dat, else text")
    g.add_argument("--min-df", type=positive_int, default=5,
                   help="text input: keep words in at least this many documents")
    g.add_argument("--synthetic-docs", type=positive_int, default=2000,
                   help="documents of the built-in synthetic corpus (used without --data)")
    g = p.add_argument_group("model")
    g.add_argument("--topics", "-K", type=positive_int, default=20, help="number of topics K")
    g.add_argument("--iterations", type=nonneg_int, default=50,
                   help="Gibbs sweeps (one clock each, after the initialisation clock)")
    g.add_argument("--alpha", type=positive_float, default=0.1,
                   help="symmetric document-topic prior")
    g.add_argument("--beta", type=positive_float, default=0.01,
                   help="symmetric topic-word prior")
    g.add_argument("--sampler", choices=SAMPLERS, default="auto",
                   help=f"auto: dense for K <= {L.DENSE_MAX_K}, alias above (measured: the "
                        "faster, and as good per iteration, at K = 100 and K = 1000); "
                        "dense: plain O(K) Gibbs sampler in one vectorised pass (fastest for "
                        "small K); alias: LightLDA-style alias tables + Metropolis-Hastings "
                        "(O(1) per token; at small K it needs more iterations or --mh-steps "
                        "to match the exact samplers); sparse: SparseLDA")
    g.add_argument("--mh-steps", type=positive_int, default=2,
                   help="alias sampler: (word, doc) proposal pairs per token (at K = 100 "
                        "about 8 are needed to match an exact sampler per iteration)")
    g.add_argument("--top-words", type=positive_int, default=20,
                   help="words per topic in topics.txt")
    return p


# --------------------------------------------------------------------------- per-worker state

class LdaWorker:
    """One worker's documents, assignments and RNG, and the per-clock steps.

    Shared by the distributed job and by ``simulate_bsp`` so that both run
    exactly the same schedule.  ``nwk``/``nk`` are replicas and
    ``nwk_d``/``nk_d`` their delta buffers (``nk`` arrays are 1-D, K).
    """

    def __init__(self, doc_ptr, words, n_words, n_topics, index, seed, alpha, beta,
                 sampler, mh_steps, n_tokens_total):
        self.doc_ptr = np.ascontiguousarray(doc_ptr, dtype=np.int64)
        self.words = np.ascontiguousarray(words, dtype=np.int32)
        self.V, self.K = int(n_words), int(n_topics)
        self.z = np.zeros(self.words.shape[0], dtype=np.int32)
        self.rng = L.rng_init(seed, index)
        self.alpha, self.beta = float(alpha), float(beta)
        self.sampler = L.auto_sampler(self.K) if sampler == "auto" else sampler
        self.mh_steps = int(mh_steps)
        self.n_docs = self.doc_ptr.shape[0] - 1
        self._tables = None
        # positive (word, topic) entries of a replica: at most the tokens, a
        # few more while other workers' increments are half-landed
        self._cap = min(self.V * self.K, int(n_tokens_total) + 4 * self.K)

    def initialise(self, nwk, nk, nwk_d, nk_d):
        L.init_assignments(self.words, self.z, self.K, nwk, nk, nwk_d, nk_d, self.rng)

    def sweep(self, nwk, nk, nwk_d, nk_d):
        if self.sampler == "dense":
            L.dense_sweep(self.doc_ptr, self.words, self.z, 0, self.n_docs, nwk, nk, nwk_d,
                          nk_d, self.alpha, self.beta, self.rng)
            return
        if self.sampler == "sparse":
            wl = L.sparse_prepare(nwk, self.words, 0, self.words.shape[0])
            L.sparse_sweep(self.doc_ptr, self.words, self.z, 0, self.n_docs, nwk, nk, nwk_d,
                           nk_d, self.alpha, self.beta, *wl, self.rng)
            return
        if self._tables is None:
            self._tables = L.alias_alloc(self.V, self.K, self._cap)
        while not L.alias_build(nwk, nk, nwk_d, nk_d, self.beta, *self._tables):
            self._cap = min(self.V * self.K, 2 * self._cap)   # more non-zeros than tokens
            self._tables = L.alias_alloc(self.V, self.K, self._cap)
        L.mh_sweep(self.doc_ptr, self.words, self.z, 0, self.n_docs, nwk, nk, nwk_d, nk_d,
                   self.alpha, self.beta, self.mh_steps, *self._tables, self.rng)

    def loglik_parts(self, nwk, nk, rows, with_topics):
        """Fixed-point (words over ``rows``, documents, topic totals) partial sums."""
        lw = int(L.loglik_words(nwk, rows, self.beta))
        ld = int(L.loglik_docs(self.doc_ptr, self.z, self.K, self.alpha))
        lt = int(L.loglik_topics(nk, self.V, self.beta)) if with_topics else 0
        return lw + ld + lt


def owned_rows(n_words, index, n_workers):
    """Rows whose log-likelihood term worker ``index`` adds (round robin)."""
    return np.arange(index, n_words, n_workers, dtype=np.int64)


def simulate_bsp(corpus, n_workers, n_topics, iterations, *, alpha=0.1, beta=0.01,
                 sampler="auto", mh_steps=2, seed=0):
    """Serial replay of the s = 0 (BSP) schedule of the distributed job:
    at every clock each worker starts from the table after all previous
    clocks.  Returns (nwk, nk, z) -- equal, integer for integer, to a
    distributed run with the same options and worker count."""
    bounds = corpus_io.split_by_tokens(corpus.doc_ptr, n_workers)
    V, K = corpus.n_words, n_topics
    workers = []
    for i in range(n_workers):
        sub = corpus.subset(int(bounds[i]), int(bounds[i + 1]))
        workers.append(LdaWorker(sub.doc_ptr, sub.words, V, K, i, seed, alpha, beta, sampler,
                                 mh_steps, corpus.n_tokens))
    nwk = np.zeros((V, K), np.int32)
    nk = np.zeros(K, np.int32)
    for c in range(iterations + 1):
        total_d = np.zeros_like(nwk)
        total_k = np.zeros_like(nk)
        for wk in workers:
            r_nwk, r_nk = nwk.copy(), nk.copy()
            d_nwk, d_nk = np.zeros_like(nwk), np.zeros_like(nk)
            if c == 0:
                wk.initialise(r_nwk, r_nk, d_nwk, d_nk)
            else:
                wk.sweep(r_nwk, r_nk, d_nwk, d_nk)
            total_d += d_nwk
            total_k += d_nk
        nwk += total_d
        nk += total_k
    return nwk, nk, np.concatenate([wk.z for wk in workers])


# --------------------------------------------------------------------------- outputs

def top_words(nwk, vocab, n):
    K = nwk.shape[1]
    lines = []
    for k in range(K):
        col = nwk[:, k]
        order = np.argsort(-col.astype(np.int64), kind="stable")[:n]
        words = [vocab[i] for i in order if col[i] > 0]
        lines.append(f"topic {k:4d} ({int(col.clip(min=0).sum())} tokens): " + " ".join(words))
    return "\n".join(lines) + "\n"


def write_model(path, nwk, nk, doc_ptr, z, vocab, alpha, beta, meta):
    import h5py
    V, K = nwk.shape
    nwk_c = np.maximum(nwk, 0).astype(np.float64)
    phi = ((nwk_c + beta) / (np.maximum(nk, 0)[None, :] + V * beta)).T.astype(np.float32)
    ndk = L.doc_topic_counts(np.asarray(doc_ptr, np.int64), np.asarray(z, np.int32), K)
    nd = np.diff(doc_ptr).astype(np.float64)
    theta = ((ndk + alpha) / (nd[:, None] + K * alpha)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("nwk", data=nwk, compression="gzip")
        f.create_dataset("nk", data=np.asarray(nk).reshape(-1))
        f.create_dataset("phi", data=phi, compression="gzip")
        f.create_dataset("theta", data=theta, compression="gzip")
        f.create_dataset("z", data=np.asarray(z, np.int32), compression="gzip")
        f.create_dataset("doc_ptr", data=np.asarray(doc_ptr, np.int64))
        f.create_dataset("vocab", data=np.array(list(vocab), dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f["nwk"].attrs["description"] = "word-topic counts (V x K)"
        f["phi"].attrs["description"] = "topic-word distributions (K x V), (nwk+beta)/(nk+V*beta)"
        f["theta"].attrs["description"] = "document-topic distributions (D x K)"
        for k, v in meta.items():
            f.attrs[k] = v if not isinstance(v, (dict, list)) else str(v)


# --------------------------------------------------------------------------- main

def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    from mpi4py import MPI
    world = MPI.COMM_WORLD

    def load():
        if args.data is None:
            c, _, _ = corpus_io.synthetic_corpus(n_docs=args.synthetic_docs, seed=args.seed + 1)
        else:
            c = corpus_io.load_corpus(args.data, args.vocab, args.format, args.min_df)
        if c.n_tokens == 0:
            raise InputError(f"{c.source}: the corpus has no tokens")
        return c

    corpus = agree(world, load)
    K = args.topics
    V = corpus.n_words
    staleness = args.staleness
    job_options = {k: (str(v) if isinstance(v, float) and math.isinf(v) else v)
                   for k, v in vars(args).items()
                   if k in ("data", "vocab", "format", "min_df", "synthetic_docs", "topics",
                            "iterations", "alpha", "beta", "sampler", "mh_steps", "top_words")}
    job_options["corpus_tokens"] = corpus.n_tokens
    cfg = config_from_args(args, job_options)
    resume = args.resume           # None, "latest" or a path: the session resolves it
    tables = [TableSpec("nwk", V, K, "int32", staleness=staleness),
              TableSpec("nk", 1, K, "int32", staleness=staleness)]

    def train(w):
        n_workers, index = w.n_workers, w.index
        bounds = corpus_io.split_by_tokens(corpus.doc_ptr, n_workers)
        sub = corpus.subset(int(bounds[index]), int(bounds[index + 1]))
        me = LdaWorker(sub.doc_ptr, sub.words, V, K, index, args.seed, args.alpha, args.beta,
                       args.sampler, args.mh_steps, corpus.n_tokens)
        rows = owned_rows(V, index, n_workers)
        t_nwk, t_nk = w.table("nwk"), w.table("nk")
        ll_parts = []                 # per iteration: this worker's fixed-point partial sum
        records = []
        if w.resumed is not None:
            if w.resumed.n_workers == n_workers:   # the same split: my own state back
                st = w.resumed.worker_state(index)
                me.z[:] = st["z"]
                me.rng[:] = st["rng"]
                ll_parts = [int(x) for x in np.asarray(st["ll_parts"]).reshape(-1)]
            else:                                  # another worker count: repartition
                states = w.resumed.worker_states()
                # old workers held consecutive documents: their z arrays, in
                # order, are the assignments of the whole corpus
                z_all = np.concatenate([np.asarray(st["z"]) for st in states])
                lo_tok, hi_tok = corpus.doc_ptr[bounds[index]], corpus.doc_ptr[bounds[index + 1]]
                me.z[:] = z_all[lo_tok:hi_tok]
                # fresh RNG stream per (seed, worker, resume clock); exactness
                # across worker counts is not defined anyway
                me.rng[:] = L.rng_init(args.seed * 1_000_003 + w.clock_value, index)
                # the history is summed over workers later: keep it once
                parts = [np.asarray(st["ll_parts"], np.int64).reshape(-1) for st in states]
                ll_parts = [int(x) for x in np.sum(parts, axis=0)] if w.is_leader \
                    else [0] * len(parts[0])

        def state():
            return {"z": me.z, "rng": me.rng, "ll_parts": np.array(ll_parts, dtype=np.int64)}
        w.set_state(state)
        t_start = time.perf_counter()
        if w.clock_value == 0:                        # clock 0: random initialisation
            nwk = t_nwk.get()
            nk = t_nk.get()[0]
            me.initialise(nwk, nk, t_nwk.delta, t_nk.delta[0])
            w.clock()
        while w.clock_value <= args.iterations:
            it = w.clock_value - 1                    # sweeps done so far
            nwk = t_nwk.get()
            nk = t_nk.get()[0]
            ll_parts.append(me.loglik_parts(nwk, nk, rows, w.is_leader))
            if staleness == 0:                        # everyone is in step anyway
                ll = L.ll_to_float(w.allreduce(np.int64(ll_parts[-1])))
            else:
                ll = None
            me.sweep(nwk, nk, t_nwk.delta, t_nk.delta[0])
            rec = w.clock()
            rec = dict(rec)
            rec["iteration"] = it + 1
            records.append(rec)
            if w.is_leader:
                tps = sub.n_tokens / max(rec["wall_s"], 1e-12)
                msg = (f"iteration {it + 1}/{args.iterations}: {tps * n_workers / 1e6:.2f}M tok/s "
                       f"(est.), worker 0: compute {rec['compute_s']:.3f}s comm "
                       f"{rec['comm_s']:.3f}s wait {rec['wait_s']:.3f}s")
                if ll is not None:
                    msg += f"; loglik/token before it {ll / corpus.n_tokens:.4f}"
                print(msg, flush=True)
        train_wall = time.perf_counter() - t_start
        final_nwk = t_nwk.get_final().copy()
        final_nk = t_nk.get_final()[0].copy()
        final = int(w.allreduce(np.int64(me.loglik_parts(final_nwk, final_nk, rows,
                                                          w.is_leader))))
        n_iter = len(ll_parts)
        parts = np.array(ll_parts, dtype=np.int64)
        total_parts = w.allreduce(parts) if n_iter else parts
        all_records = w.gather(records)
        all_z = w.gather(me.z)
        walls = w.allgather(train_wall)
        peak_mb = w.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return {"nwk": final_nwk, "nk": final_nk, "final_ll": final,
                "ll_history": [int(x) for x in np.asarray(total_parts).reshape(-1)],
                "records": all_records, "z": all_z, "train_wall": max(walls),
                "peak_rss_mb": peak_mb}

    # one rank per node compiles (or loads) the kernels first, then the rest
    # load them from Numba's cache, before any clock is timed
    mpienv.compile_once(world, L.warmup)
    with Session(cfg, tables=tables, resume=resume) as ps:
        t0 = time.perf_counter()
        res = ps.run(train)
        wall = time.perf_counter() - t0
        if res.worker is not None and res.worker.is_leader:
            if res.stopped:
                print(f"stopped at clock {res.worker.clock_value} after a checkpoint; "
                      f"continue with --resume", flush=True)
                return 0
            _write_outputs(args, corpus, ps.layout, res, wall)
    return 0


def _write_outputs(args, corpus, layout, res, wall):
    v = res.value
    N = corpus.n_tokens
    n_workers = layout.n_workers
    loglik = L.ll_to_float(v["final_ll"])
    history = [L.ll_to_float(x) for x in v["ll_history"]]
    iters = args.iterations
    train_wall = v["train_wall"]
    tps = N * iters / train_wall if train_wall > 0 else 0.0
    summ = res.summary or {}
    config = {k: (str(x) if isinstance(x, float) and math.isinf(x) else x)
              for k, x in vars(args).items()}
    summary = {
        "loglik": loglik, "loglik_per_token": loglik / N,
        "perplexity": math.exp(-loglik / N), "iterations": iters, "topics": args.topics,
        "tokens": N, "documents": corpus.n_docs, "vocabulary": corpus.n_words,
        "tokens_per_s": tps, "tokens_per_s_per_worker": tps / n_workers,
        "staleness": (str(args.staleness) if isinstance(args.staleness, float)
                      else args.staleness),
        "workers": n_workers, "servers": layout.n_servers, "wall_s": wall,
        "train_wall_s": train_wall,
        "compute_s": summ.get("compute_s", 0.0), "comm_s": summ.get("comm_s", 0.0),
        "wait_s": summ.get("wait_s", 0.0),
        "compute_max_s": summ.get("compute_max_s", 0.0), "comm_max_s": summ.get("comm_max_s", 0.0),
        "wait_max_s": summ.get("wait_max_s", 0.0),
        "peak_rss_mb_per_worker": v["peak_rss_mb"],
        "sampler": L.auto_sampler(args.topics) if args.sampler == "auto" else args.sampler,
        "corpus": corpus.source, "config": config,
        "loglik_note": ("per-iteration values are exact at staleness 0; at staleness > 0 each "
                        "worker adds its terms from its own replica; the final value is exact"),
    }
    # per-iteration metrics: time of the slowest worker, sums of compute/comm/wait
    by_clock = {}
    for recs in v["records"]:
        for r in recs:
            by_clock.setdefault(r["iteration"], []).append(r)
    with OutputDir(args.out) as out:
        elapsed = 0.0
        for i, ll in enumerate(history):
            it = i                       # state after `it` sweeps
            rec = {"iteration": it, "loglik": ll, "loglik_per_token": ll / N,
                   "perplexity": math.exp(-ll / N)}
            rs = by_clock.get(it, [])
            if rs:
                wall_it = max(r["wall_s"] for r in rs)
                elapsed = max(r["elapsed_s"] for r in rs)
                rec.update({"wall_s": wall_it, "elapsed_s": elapsed,
                            "tokens_per_s": N / wall_it if wall_it > 0 else 0.0,
                            "compute_s": sum(r["compute_s"] for r in rs),
                            "comm_s": sum(r["comm_s"] for r in rs),
                            "wait_s": sum(r["wait_s"] for r in rs),
                            "wait_max_s": max(r["wait_s"] for r in rs)})
            out.append_metrics(rec)
        last = {"iteration": iters, "loglik": loglik, "loglik_per_token": loglik / N,
                "perplexity": math.exp(-loglik / N), "final": True}
        rs = by_clock.get(iters, [])
        if rs:
            wall_it = max(r["wall_s"] for r in rs)
            last.update({"wall_s": wall_it, "elapsed_s": max(r["elapsed_s"] for r in rs),
                         "tokens_per_s": N / wall_it if wall_it > 0 else 0.0,
                         "compute_s": sum(r["compute_s"] for r in rs),
                         "comm_s": sum(r["comm_s"] for r in rs),
                         "wait_s": sum(r["wait_s"] for r in rs),
                         "wait_max_s": max(r["wait_s"] for r in rs)})
        out.append_metrics(last)
        z = np.concatenate(v["z"]) if v["z"] else np.zeros(0, np.int32)
        write_model(out.path("model.h5"), v["nwk"], v["nk"], corpus.doc_ptr, z, corpus.vocab,
                    args.alpha, args.beta,
                    {"alpha": args.alpha, "beta": args.beta, "topics": args.topics,
                     "iterations": iters, "loglik": loglik, "sampler": summary["sampler"],
                     "corpus": corpus.source})
        out.write_text("topics.txt", top_words(v["nwk"], corpus.vocab, args.top_words))
        out.write_json("summary.json", summary)
    print(f"done: loglik/token {loglik / N:.4f}, perplexity {math.exp(-loglik / N):.1f}, "
          f"{tps / 1e6:.2f}M tokens/s ({n_workers} workers, {layout.n_servers} servers); "
          f"outputs in {args.out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
