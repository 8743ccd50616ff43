"""Corpus readers for the LDA job, and the built-in synthetic corpus.

A corpus is held as flat, CSR-style token arrays (``Corpus``): ``doc_ptr``
(int64, D+1 offsets) and ``words`` (int32 word id of every token, documents
one after another).  Bag-of-words input is expanded to one entry per token.

Formats
-------
* UCI bag-of-words (``docword.NAME.txt`` or ``.txt.gz``, and ``vocab.NAME.txt``):
  three header lines ``D``, ``W``, ``NNZ`` then one ``docID wordID count``
  triple per line, ids 1-based, counts positive integers.
* LDA-C: one document per line, ``N id:count id:count ...`` with ``N`` the
  number of pairs, ids 0-based; the vocabulary file has one word per line.
* Plain text: one document per line; lower-cased, split into words of
  letters (an inner apostrophe allowed), English stop words and words of one
  letter removed, and words in fewer than ``min_df`` documents dropped.
* ``synthetic_corpus``: documents drawn from LDA's generative process with a
  fixed seed; returns the true topics too.  This is the job's default data.

Malformed input raises ``InputError`` with the file name, the 1-based line
number and what to fix.  The readers parse with vectorised NumPy and fall
back to a line-by-line pass only to locate an error, so they handle millions
of tokens quickly.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

try:  # the library's error type, when the core package is present
    from ssp_mpi.errors import InputError
except ImportError:  # pragma: no cover - only before ssp_mpi exists
    class InputError(ValueError):  # TODO: remove once ssp_mpi.errors exists everywhere
        """Malformed input (placeholder until ssp_mpi.errors is available)."""

__all__ = [
    "Corpus", "InputError", "ENGLISH_STOP_WORDS", "read_uci", "read_ldac",
    "read_text", "corpus_from_texts", "read_vocab", "synthetic_corpus",
    "load_corpus", "split_by_tokens",
]


@dataclass
class Corpus:
    """Tokens of D documents in CSR layout.

    ``words[doc_ptr[d]:doc_ptr[d+1]]`` are the word ids of document ``d``.
    ``vocab[v]`` is the string of word id ``v`` (``len(vocab) == V``).
    """

    doc_ptr: np.ndarray
    words: np.ndarray
    vocab: list
    source: str = "memory"
    doc_names: list = field(default=None, repr=False)

    @property
    def n_docs(self) -> int:
        return int(self.doc_ptr.shape[0] - 1)

    @property
    def n_tokens(self) -> int:
        return int(self.words.shape[0])

    @property
    def n_words(self) -> int:
        return len(self.vocab)

    def doc_lengths(self) -> np.ndarray:
        return np.diff(self.doc_ptr)

    def doc_term_matrix(self) -> np.ndarray:
        """Dense D x V count matrix (for small corpora and comparisons)."""
        dt = np.zeros((self.n_docs, self.n_words), dtype=np.int64)
        doc_of = np.repeat(np.arange(self.n_docs), self.doc_lengths())
        np.add.at(dt, (doc_of, self.words), 1)
        return dt

    def subset(self, d0: int, d1: int) -> "Corpus":
        """Documents ``d0 .. d1-1`` (same vocabulary)."""
        lo, hi = int(self.doc_ptr[d0]), int(self.doc_ptr[d1])
        names = None if self.doc_names is None else self.doc_names[d0:d1]
        return Corpus(self.doc_ptr[d0:d1 + 1] - lo, self.words[lo:hi].copy(),
                      self.vocab, self.source, names)


# --------------------------------------------------------------------------
# helpers

def _open_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path given to --data/--vocab")
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot be read ({e}); is it a complete "
                         f"{'gzip ' if str(path).endswith('.gz') else ''}file?") from e


def _parse_numbers(body: bytes):
    """All whitespace-separated numbers of ``body`` as float64, or None if some
    token is not a number (the caller then locates the bad line)."""
    if not body.strip():
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(body, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _int_token(tok: str):
    """``int`` of a decimal integer token, else None."""
    try:
        return int(tok)
    except ValueError:
        return None


def read_vocab(path: str, expected: int | None = None, what: str = "vocabulary") -> list:
    """One word per line (UTF-8; surrounding whitespace stripped).  UCI vocab
    files have exactly this form, so do most LDA-C vocabulary files."""
    data = _open_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text; save the {what} file as UTF-8") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab = []
    for i, raw in enumerate(lines, 1):
        word = raw.strip()
        if not word:
            raise InputError(f"{path}:{i}: empty line in the {what} file; "
                             f"write exactly one word per line")
        vocab.append(word)
    if not vocab:
        raise InputError(f"{path}:1: the {what} file is empty; write one word per line")
    if expected is not None and len(vocab) != expected:
        raise InputError(f"{path}:{len(vocab)}: the {what} file has {len(vocab)} words but "
                         f"the data file declares {expected}; use the matching vocabulary file")
    return vocab


def _expand_counts(doc_ids, word_ids, counts, n_docs):
    """CSR token arrays from (doc, word, count) triples (0-based ids).  Tokens
    of a document keep the order of the triples."""
    order = np.argsort(doc_ids, kind="stable")
    doc_ids, word_ids, counts = doc_ids[order], word_ids[order], counts[order]
    words = np.repeat(word_ids.astype(np.int32), counts.astype(np.int64))
    per_doc = np.bincount(doc_ids, weights=counts, minlength=n_docs).astype(np.int64)
    doc_ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(per_doc, out=doc_ptr[1:])
    return doc_ptr, words


def _check_not_all_empty(path, n_tokens, line):
    if n_tokens == 0:
        raise InputError(f"{path}:{line}: every document is empty (no tokens); "
                         f"give a file with at least one word count")


# --------------------------------------------------------------------------
# UCI bag of words

def _uci_slow(path, lines, n_docs, n_words, nnz):
    """Line-by-line check of a UCI body; raises at the first bad line."""
    seen = 0
    for i, raw in enumerate(lines[3:], 4):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise InputError(f"{path}:{i}: expected 'docID wordID count' (3 integers), "
                             f"found {len(parts)} fields: {raw.strip()[:60]!r}")
        d, w, c = (_int_token(p) for p in parts)
        if d is None or w is None or c is None:
            raise InputError(f"{path}:{i}: 'docID wordID count' must be integers, "
                             f"found {raw.strip()[:60]!r}")
        if c <= 0:
            raise InputError(f"{path}:{i}: count {c} is not a positive integer; "
                             f"counts must be >= 1 (drop zero entries)")
        if not 1 <= d <= n_docs:
            raise InputError(f"{path}:{i}: docID {d} is outside 1..{n_docs} "
                             f"(the header's D on line 1); fix the id or the header")
        if not 1 <= w <= n_words:
            raise InputError(f"{path}:{i}: wordID {w} is outside the vocabulary 1..{n_words} "
                             f"(the header's W on line 2); fix the id or the vocabulary")
        seen += 1
    if seen != nnz:
        raise InputError(f"{path}:3: the header says NNZ = {nnz} but the body has {seen} "
                         f"'docID wordID count' lines; fix the header or the body")


def read_uci(path: str, vocab_path: str | None = None) -> Corpus:
    """Read a UCI bag-of-words ``docword`` file (optionally gzipped) and its
    ``vocab`` file.  Without ``vocab_path`` words are named ``w<id>``."""
    data = _open_bytes(path)
    # header: first three non-comment lines
    head_end = 0
    header = []
    for _ in range(3):
        nl = data.find(b"\n", head_end)
        if nl < 0:
            nl = len(data)
        header.append(data[head_end:nl])
        head_end = nl + 1
    names = ("D (number of documents)", "W (vocabulary size)", "NNZ (number of entries)")
    vals = []
    for i, (h, name) in enumerate(zip(header, names), 1):
        v = _int_token(h.decode("utf-8", "replace").strip()) if h.strip() else None
        if v is None or v < 0:
            raise InputError(f"{path}:{i}: header line {i} must be the integer {name}, "
                             f"found {h.decode('utf-8', 'replace').strip()[:40]!r}; "
                             f"is this a UCI docword file?")
        vals.append(v)
    n_docs, n_words, nnz = vals
    if n_docs == 0 or n_words == 0:
        raise InputError(f"{path}:{1 if n_docs == 0 else 2}: the header declares no "
                         f"{'documents' if n_docs == 0 else 'words'}; nothing to train on")
    body = data[head_end:] if head_end < len(data) else b""
    arr = _parse_numbers(body)
    ok = arr is not None and arr.size == 3 * nnz
    if ok:
        tri = arr.reshape(nnz, 3)
        d, w, c = tri[:, 0], tri[:, 1], tri[:, 2]
        ok = bool(np.all(c >= 1) and np.all(c == np.floor(c)) and np.all(d == np.floor(d))
                  and np.all(w == np.floor(w)) and np.all((d >= 1) & (d <= n_docs))
                  and np.all((w >= 1) & (w <= n_words)))
        if ok:
            # the same count of numbers could hide lines with 2 or 4 fields
            nonblank = np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == 10)
            if nonblank != nnz and not (nonblank == nnz - 1 and not body.endswith(b"\n")):
                ok = False
    if not ok:
        lines = data.decode("utf-8", "replace").split("\n")
        _uci_slow(path, lines, n_docs, n_words, nnz)
        # the slow pass accepted it (e.g. blank lines): parse it from its lines
        tri = np.array([ln.split() for ln in lines[3:] if ln.strip()],
                       dtype=np.int64).reshape(-1, 3).astype(np.float64)
        d, w, c = tri[:, 0], tri[:, 1], tri[:, 2]
    d = d.astype(np.int64) - 1
    w = w.astype(np.int64) - 1
    c = c.astype(np.int64)
    _check_not_all_empty(path, int(c.sum()), 4)
    doc_ptr, words = _expand_counts(d, w, c, n_docs)
    vocab = (read_vocab(vocab_path, expected=n_words) if vocab_path
             else [f"w{i + 1}" for i in range(n_words)])
    return Corpus(doc_ptr, words, vocab, source=str(path))


# --------------------------------------------------------------------------
# LDA-C

def _ldac_slow(path, text, n_words):
    for i, raw in enumerate(text.split("\n"), 1):
        parts = raw.split()
        if not parts:
            continue
        n = _int_token(parts[0])
        if n is None or n < 0:
            raise InputError(f"{path}:{i}: a line must start with N, the number of "
                             f"'id:count' pairs, found {parts[0][:30]!r}")
        if len(parts) - 1 != n:
            raise InputError(f"{path}:{i}: the line says N = {n} but has {len(parts) - 1} "
                             f"'id:count' pairs; fix N or the pairs")
        for p in parts[1:]:
            a, sep, b = p.partition(":")
            wid, cnt = _int_token(a), _int_token(b)
            if not sep or wid is None or cnt is None:
                raise InputError(f"{path}:{i}: {p[:30]!r} is not an 'id:count' pair of integers")
            if cnt <= 0:
                raise InputError(f"{path}:{i}: count {cnt} (in {p!r}) is not a positive "
                                 f"integer; counts must be >= 1")
            if not 0 <= wid < (n_words if n_words is not None else 1 << 62):
                raise InputError(f"{path}:{i}: word id {wid} is outside the vocabulary "
                                 f"0..{n_words - 1} (ids are 0-based); fix the id or the "
                                 f"vocabulary file")


def read_ldac(path: str, vocab_path: str | None = None) -> Corpus:
    """Read an LDA-C file (``N id:count ...`` per document, ids 0-based) and a
    vocabulary file (one word per line).  Blank lines are empty documents only
    inside the file; a trailing newline is not a document."""
    data = _open_bytes(path)
    vocab = read_vocab(vocab_path) if vocab_path else None
    n_words = len(vocab) if vocab is not None else None
    text_lines = data.split(b"\n")
    if text_lines and not text_lines[-1].strip():
        text_lines.pop()
    n_docs = len(text_lines)
    if n_docs == 0:
        raise InputError(f"{path}:1: the file has no documents; write one "
                         f"'N id:count ...' line per document")
    arr = _parse_numbers(data.replace(b":", b" "))
    ok = arr is not None
    if ok:
        # walk N, then 2N numbers, per document
        ok, lens, starts = _ldac_walk(arr, n_docs)
        if ok:
            pairs = _pair_index(starts, lens)
            vals = arr[pairs].reshape(-1, 2)
            wid, cnt = vals[:, 0], vals[:, 1]
            ok = bool(np.all(cnt >= 1) and np.all(cnt == np.floor(cnt))
                      and np.all(wid == np.floor(wid)) and np.all(wid >= 0)
                      and (n_words is None or np.all(wid < n_words)))
            # each document must be on its own line: per-line number counts
            if ok:
                per_line = np.array([ln.count(b":") for ln in text_lines], dtype=np.int64)
                ok = bool(np.array_equal(per_line, lens))
    if not ok:
        _ldac_slow(path, data.decode("utf-8", "replace"), n_words)
        raise InputError(f"{path}: not in LDA-C format ('N id:count ...' per line)")
    wid = wid.astype(np.int64)
    cnt = cnt.astype(np.int64)
    if n_words is None:
        n_words = int(wid.max()) + 1 if wid.size else 1
        vocab = [f"w{i}" for i in range(n_words)]
    doc_of = np.repeat(np.arange(n_docs), lens)
    _check_not_all_empty(path, int(cnt.sum()), 1)
    doc_ptr, words = _expand_counts(doc_of, wid, cnt, n_docs)
    return Corpus(doc_ptr, words, vocab, source=str(path))


def _ldac_walk(arr, n_docs):
    lens = np.empty(n_docs, dtype=np.int64)
    starts = np.empty(n_docs, dtype=np.int64)
    p = 0
    size = arr.size
    for d in range(n_docs):
        if p >= size:
            return False, None, None
        n = arr[p]
        if n < 0 or n != int(n):
            return False, None, None
        n = int(n)
        lens[d] = n
        starts[d] = p + 1
        p += 1 + 2 * n
    return p == size, lens, starts


def _pair_index(starts, lens):
    """Indices of the 2*N numbers after each document's N in the flat array."""
    total = int(lens.sum()) * 2
    offs = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(2 * lens, out=offs[1:])
    return np.repeat(starts, 2 * lens) + (np.arange(total) - np.repeat(offs[:-1], 2 * lens))


# --------------------------------------------------------------------------
# plain text

ENGLISH_STOP_WORDS = frozenset("""
a about above across after afterwards again against all almost alone along already also
although always am among amongst amount an and another any anyhow anyone anything anyway
anywhere are around as at back be became because become becomes becoming been before
beforehand behind being below beside besides between beyond both bottom but by call can
cannot could did do does doing done down due during each eg eight either eleven else
elsewhere empty enough etc even ever every everyone everything everywhere except few
fifteen fifty fill find first five for former formerly forty four from front full further
get give go going gone got had has have having he hence her here hereafter hereby herein
hereupon hers herself him himself his how however hundred i ie if in inc indeed instead
into is it its itself just keep last latter latterly least less let like made make many
may me meanwhile might mine more moreover most mostly move much must my myself name namely
neither never nevertheless new next nine no nobody none noone nor not nothing now nowhere
of off often on once one only onto or other others otherwise our ours ourselves out over
own part per perhaps please put rather re really said same say says see seem seemed
seeming seems several she should show side since six sixty so some somehow someone
something sometime sometimes somewhere still such take ten than that the their theirs them
themselves then thence there thereafter thereby therefore therein thereupon these they
thing things third this those though three through throughout thru thus to together too
top toward towards twelve twenty two under until up upon us use used using very via was
way we well were what whatever when whence whenever where whereafter whereas whereby
wherein whereupon wherever whether which while whither who whoever whole whom whose why
will with within without would yet you your yours yourself yourselves
don doesn didn isn wasn weren aren hasn haven hadn won wouldn shouldn couldn can't don't
i'm i've i'd i'll you're you've you'll he's she's it's we're we've they're they've
that's there's what's let's also just mr mrs ms
""".split())

_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def corpus_from_texts(texts, *, min_df: int = 5, stop_words=ENGLISH_STOP_WORDS,
                      min_length: int = 2, source: str = "texts",
                      line_numbers=None) -> Corpus:
    """Tokenise documents (strings): lower-case, words of letters with an
    optional inner apostrophe, drop stop words and words shorter than
    ``min_length``, keep words in at least ``min_df`` documents.  Vocabulary
    ids are assigned in order of first occurrence (deterministic)."""
    stop = frozenset(stop_words or ())
    ids = {}
    doc_tokens = []
    df = []
    for text in texts:
        toks = [t for t in _WORD_RE.findall(text.lower())
                if len(t) >= min_length and t not in stop]
        row = []
        seen = set()
        for t in toks:
            i = ids.get(t)
            if i is None:
                i = ids[t] = len(ids)
                df.append(0)
            row.append(i)
            if i not in seen:
                seen.add(i)
                df[i] += 1
        doc_tokens.append(row)
    if not doc_tokens:
        raise InputError(f"{source}:1: no documents; write one document per line")
    df = np.asarray(df, dtype=np.int64)
    keep = df >= max(1, int(min_df))
    remap = np.full(len(df), -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    lens = np.array([len(r) for r in doc_tokens], dtype=np.int64)
    flat = np.fromiter((i for r in doc_tokens for i in r), dtype=np.int64, count=int(lens.sum()))
    mapped = remap[flat] if flat.size else flat
    doc_of = np.repeat(np.arange(len(doc_tokens)), lens)
    good = mapped >= 0
    mapped, doc_of = mapped[good], doc_of[good]
    if mapped.size == 0:
        raise InputError(f"{source}:1: every document is empty after lower-casing, stop-word "
                         f"removal and min_df={min_df}; lower --min-df or check the file")
    words = mapped.astype(np.int32)
    doc_ptr = np.zeros(len(doc_tokens) + 1, dtype=np.int64)
    np.cumsum(np.bincount(doc_of, minlength=len(doc_tokens)), out=doc_ptr[1:])
    inv = np.empty(int(keep.sum()), dtype=object)
    for t, i in ids.items():
        if keep[i]:
            inv[remap[i]] = t
    return Corpus(doc_ptr, words, list(inv), source=source)


def read_text(path: str, *, min_df: int = 5, stop_words=ENGLISH_STOP_WORDS) -> Corpus:
    """Plain text, one document per line (UTF-8)."""
    data = _open_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InputError(f"{path}:1: the file is empty; write one document per line")
    return corpus_from_texts(lines, min_df=min_df, stop_words=stop_words, source=str(path))


# --------------------------------------------------------------------------
# synthetic corpus

def synthetic_corpus(n_docs: int = 2000, n_words: int = 1000, n_topics: int = 20,
                     doc_length: int = 100, alpha: float = 0.1, beta: float = 0.05,
                     seed: int = 1):
    """Documents drawn from LDA's generative process (deterministic for a seed).

    Returns ``(corpus, phi, theta)``: ``phi`` (K x V) the true topic-word
    distributions, ``theta`` (D x K) the true document-topic proportions.
    Document lengths are Poisson(doc_length) (at least 1).
    """
    rng = np.random.default_rng(seed)
    phi = rng.dirichlet(np.full(n_words, beta), size=n_topics)
    theta = rng.dirichlet(np.full(n_topics, alpha), size=n_docs)
    lens = np.maximum(1, rng.poisson(doc_length, size=n_docs)).astype(np.int64)
    doc_ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lens, out=doc_ptr[1:])
    n = int(doc_ptr[-1])
    # topic of every token, then its word, by inverse-CDF sampling
    doc_of = np.repeat(np.arange(n_docs), lens)
    cth = np.cumsum(theta, axis=1)
    cth[:, -1] = 1.0
    u = rng.random(n)
    ztrue = np.empty(n, dtype=np.int64)
    for d in range(n_docs):  # per-document searchsorted keeps memory small
        lo, hi = doc_ptr[d], doc_ptr[d + 1]
        ztrue[lo:hi] = np.searchsorted(cth[d], u[lo:hi], side="right")
    np.minimum(ztrue, n_topics - 1, out=ztrue)
    cph = np.cumsum(phi, axis=1)
    cph[:, -1] = 1.0
    u = rng.random(n)
    words = np.empty(n, dtype=np.int32)
    for k in range(n_topics):
        sel = np.nonzero(ztrue == k)[0]
        words[sel] = np.minimum(np.searchsorted(cph[k], u[sel], side="right"), n_words - 1)
    del doc_of
    vocab = [f"w{v:04d}" for v in range(n_words)]
    name = f"synthetic(D={n_docs},V={n_words},K={n_topics},len={doc_length},seed={seed})"
    return Corpus(doc_ptr, words, vocab, source=name), phi, theta


# --------------------------------------------------------------------------

def load_corpus(data: str | None, vocab: str | None = None, fmt: str = "auto",
                min_df: int = 5) -> Corpus:
    """Dispatch on ``fmt`` (``uci``, ``ldac``, ``text`` or ``auto``: UCI when
    the name contains ``docword``, LDA-C for ``.ldac``/``.dat``, else text).
    ``data=None`` gives the built-in synthetic corpus."""
    if data is None:
        return synthetic_corpus()[0]
    if fmt == "auto":
        base = os.path.basename(data).lower()
        if "docword" in base:
            fmt = "uci"
        elif base.endswith((".ldac", ".lda-c", ".dat", ".ldac.gz")):
            fmt = "ldac"
        else:
            fmt = "text"
    if fmt == "uci":
        return read_uci(data, vocab)
    if fmt == "ldac":
        return read_ldac(data, vocab)
    if fmt == "text":
        return read_text(data, min_df=min_df)
    raise InputError(f"--format {fmt!r}: unknown; use uci, ldac, text or auto")


def split_by_tokens(doc_ptr: np.ndarray, n_parts: int) -> np.ndarray:
    """Boundaries (n_parts+1 document indices) splitting documents into
    contiguous ranges of nearly equal token counts."""
    n_docs = doc_ptr.shape[0] - 1
    total = int(doc_ptr[-1])
    targets = (np.arange(1, n_parts) * total) / n_parts
    cuts = np.searchsorted(doc_ptr, targets, side="left")
    bounds = np.concatenate(([0], np.clip(cuts, 0, n_docs), [n_docs])).astype(np.int64)
    return np.maximum.accumulate(bounds)

