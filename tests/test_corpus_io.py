"""Corpus readers (jobs/data/corpus.py): every format and every bad-input case."""

import gzip
import os
import time

import numpy as np
import pytest

from jobs.data import corpus as C
from jobs.data.corpus import InputError


def _write(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return str(path)


UCI = "3\n4\n5\n1 1 2\n1 3 1\n2 2 1\n3 4 3\n3 1 1\n"
VOCAB = "apple\nbanana\ncherry\ndate\n"


def _docs(c):
    return [list(c.words[c.doc_ptr[d]:c.doc_ptr[d + 1]]) for d in range(c.n_docs)]


def test_error_class_is_the_librarys():
    try:
        from ssp_mpi.errors import InputError as Lib
    except ImportError:
        pytest.skip("ssp_mpi.errors not present")
    assert C.InputError is Lib
    assert issubclass(C.InputError, ValueError)


@pytest.mark.parametrize("gz", [False, True])
def test_uci_reads(tmp_path, gz):
    dw = _write(tmp_path / ("docword.t.txt" + (".gz" if gz else "")), UCI, gz)
    vp = _write(tmp_path / "vocab.t.txt", VOCAB)
    c = C.read_uci(dw, vp)
    assert c.n_docs == 3 and c.n_words == 4 and c.n_tokens == 8
    assert _docs(c) == [[0, 0, 2], [1], [3, 3, 3, 0]]
    assert c.vocab == ["apple", "banana", "cherry", "date"]
    assert c.words.dtype == np.int32 and c.doc_ptr.dtype == np.int64
    dt = c.doc_term_matrix()
    assert dt[2, 3] == 3 and dt.sum() == 8


def test_uci_blank_lines_and_no_trailing_newline(tmp_path):
    dw = _write(tmp_path / "docword.b.txt", "3\n4\n2\n1 1 2\n\n3 4 1")
    c = C.read_uci(dw)
    assert _docs(c) == [[0, 0], [], [3]]
    assert c.vocab[0] == "w1"


def test_uci_empty_documents_allowed(tmp_path):
    dw = _write(tmp_path / "docword.e.txt", "4\n4\n1\n2 2 1\n")
    c = C.read_uci(dw)
    assert c.n_docs == 4 and list(c.doc_lengths()) == [0, 1, 0, 0]


@pytest.mark.parametrize("body,line,needle", [
    ("3\n4\n2\n1 1 2\n1 2 0\n", 5, "not a positive integer"),
    ("3\n4\n2\n1 1 2\n1 2 -3\n", 5, "not a positive integer"),
    ("3\n4\n2\n1 1 2\n1 2 1.5\n", 5, "integers"),
    ("3\n4\n2\n1 1 2\n1 5 1\n", 5, "outside the vocabulary"),
    ("3\n4\n2\n1 0 1\n1 2 1\n", 4, "outside the vocabulary"),
    ("3\n4\n2\n4 1 1\n1 2 1\n", 4, "docID 4"),
    ("3\n4\n2\n1 1 1\n1 2 1 7\n", 5, "3 integers"),
    ("3\n4\n2\n1 1 1\nx 2 1\n", 5, "integers"),
    ("3\n4\n3\n1 1 1\n1 2 1\n", 3, "NNZ = 3"),
    ("3\n4\n1\n1 1 1\n1 2 1\n", 3, "NNZ = 1"),
    ("3\nfour\n1\n1 1 1\n", 2, "W (vocabulary size)"),
    ("3\n4\n0\n", 4, "every document is empty"),
])
def test_uci_bad_input_names_file_and_line(tmp_path, body, line, needle):
    dw = _write(tmp_path / "docword.bad.txt", body)
    with pytest.raises(InputError) as e:
        C.read_uci(dw)
    msg = str(e.value)
    assert f"docword.bad.txt:{line}:" in msg, msg
    assert needle in msg, msg


def test_uci_vocab_size_mismatch(tmp_path):
    dw = _write(tmp_path / "docword.t.txt", UCI)
    vp = _write(tmp_path / "vocab.t.txt", "apple\nbanana\n")
    with pytest.raises(InputError, match=r"vocab\.t\.txt:2: .*declares 4"):
        C.read_uci(dw, vp)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        C.read_uci(str(tmp_path / "nope.txt"))


def test_ldac_reads(tmp_path):
    p = _write(tmp_path / "c.ldac", "2 0:2 2:1\n1 1:1\n0\n2 3:3 0:1\n")
    v = _write(tmp_path / "vocab.txt", VOCAB)
    c = C.read_ldac(p, v)
    assert _docs(c) == [[0, 0, 2], [1], [], [3, 3, 3, 0]]
    assert c.vocab[3] == "date"


@pytest.mark.parametrize("body,line,needle", [
    ("2 0:2 2:1\n2 1:1\n", 2, "N = 2 but has 1"),
    ("2 0:2 2:0\n", 1, "not a positive"),
    ("1 0:2\n1 9:1\n", 2, "outside the vocabulary"),
    ("1 0:2\n1 1-1\n", 2, "'id:count' pair"),
    ("x 0:1\n", 1, "must start with N"),
    ("1 0:2.5\n", 1, "'id:count' pair"),
    ("0\n0\n", 1, "every document is empty"),
])
def test_ldac_bad_input(tmp_path, body, line, needle):
    p = _write(tmp_path / "bad.ldac", body)
    v = _write(tmp_path / "vocab.txt", VOCAB)
    with pytest.raises(InputError) as e:
        C.read_ldac(p, v)
    msg = str(e.value)
    assert f"bad.ldac:{line}:" in msg, msg
    assert needle in msg, msg


def test_vocab_with_empty_line(tmp_path):
    v = _write(tmp_path / "vocab.txt", "a\n\nb\n")
    with pytest.raises(InputError, match=r"vocab\.txt:2: empty line"):
        C.read_vocab(v)


def test_text_reader(tmp_path):
    p = _write(tmp_path / "docs.txt",
               "The Cat sat on the mat.\nA cat and a dog!\nDogs' dinner: the dog ate.\n\n")
    c = C.read_text(p, min_df=2)
    # 'the', 'on', 'a', 'and' are stop words; 'sat', 'mat', 'ate' in one doc only
    assert sorted(c.vocab) == ["cat", "dog"]
    names = [[c.vocab[i] for i in doc] for doc in _docs(c)]
    assert names == [["cat"], ["cat", "dog"], ["dog"], []]
    c1 = C.read_text(p, min_df=1)
    assert "sat" in c1.vocab and "the" not in c1.vocab and "Cat" not in c1.vocab


def test_text_only_empty_documents(tmp_path):
    p = _write(tmp_path / "docs.txt", "the and a\nof to\n")
    with pytest.raises(InputError, match=r"docs\.txt:1: every document is empty"):
        C.read_text(p, min_df=1)


def test_text_not_utf8(tmp_path):
    p = tmp_path / "docs.txt"
    p.write_bytes(b"fine words here\nbad \xff\xfe bytes\n")
    with pytest.raises(InputError, match=r"docs\.txt:2: not UTF-8"):
        C.read_text(str(p))


def test_stop_words_are_english():
    for w in ("the", "and", "of", "which", "would"):
        assert w in C.ENGLISH_STOP_WORDS
    assert "market" not in C.ENGLISH_STOP_WORDS


def test_synthetic_is_deterministic():
    a, phi, theta = C.synthetic_corpus(n_docs=50, n_words=30, n_topics=4, seed=3)
    b, phi2, _ = C.synthetic_corpus(n_docs=50, n_words=30, n_topics=4, seed=3)
    assert np.array_equal(a.words, b.words) and np.array_equal(a.doc_ptr, b.doc_ptr)
    assert np.allclose(phi, phi2) and phi.shape == (4, 30) and theta.shape == (50, 4)
    assert np.allclose(phi.sum(1), 1) and a.words.max() < 30
    c, _, _ = C.synthetic_corpus(n_docs=50, n_words=30, n_topics=4, seed=4)
    assert not np.array_equal(a.words, c.words)


def test_load_corpus_dispatch(tmp_path):
    assert C.load_corpus(None).n_tokens > 0
    dw = _write(tmp_path / "docword.t.txt", UCI)
    assert C.load_corpus(dw).n_tokens == 8
    with pytest.raises(InputError, match="--format"):
        C.load_corpus(dw, fmt="xml")


def test_split_by_tokens():
    doc_ptr = np.array([0, 10, 11, 30, 31, 40, 60])
    b = C.split_by_tokens(doc_ptr, 3)
    assert b[0] == 0 and b[-1] == 6 and np.all(np.diff(b) >= 0) and len(b) == 4
    parts = [doc_ptr[b[i + 1]] - doc_ptr[b[i]] for i in range(3)]
    assert sum(parts) == 60 and max(parts) <= 31
    assert list(C.split_by_tokens(np.array([0, 5]), 3)) in ([0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1])


def test_uci_large_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    D, V, per = 20000, 5000, 50
    d = np.repeat(np.arange(1, D + 1), per)
    w = rng.integers(1, V + 1, size=D * per)
    c = rng.integers(1, 4, size=D * per)
    body = "\n".join(f"{a} {b} {x}" for a, b, x in zip(d, w, c))
    p = _write(tmp_path / "docword.big.txt", f"{D}\n{V}\n{D * per}\n{body}\n")
    t = time.perf_counter()
    corp = C.read_uci(p)
    dt = time.perf_counter() - t
    assert corp.n_tokens == int(c.sum())  # about 2M tokens
    assert dt < 15, dt
    os.remove(p)
