"""Readers of jobs.data.ratings: every format, auto-detection, id maps,
split, synthetic data, and one clear error (file and line) per bad input."""
import gzip

import numpy as np
import pytest

from jobs.data import ratings as RT
from jobs.data.ratings import InputError

# (user raw id, item raw id, rating) - ids sparse on purpose, ratings incl. halves
ROWS = [(7, 100, 5.0), (3, 100, 3.5), (7, 42, 1.0), (12, 9, 4.25), (3, 9, 2.0),
        (1000000007, 42, 0.5)]


def _write(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _udata(rows):
    return "".join(f"{u}\t{i}\t{r:g}\t88125{n}\n" for n, (u, i, r) in enumerate(rows))


def _colons(rows):
    return "".join(f"{u}::{i}::{r:g}::97830{n}\n" for n, (u, i, r) in enumerate(rows))


def _csv(rows):
    return "userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r:g},{n}\n" for n, (u, i, r) in enumerate(rows))


def _triplets(rows):
    return "".join(f"{u} {i}   {r!r}\n" for u, i, r in rows)


def _mm(rows):
    us = sorted({u for u, _, _ in rows})
    its = sorted({i for _, i, _ in rows})
    body = "".join(f"{us.index(u) + 1} {its.index(i) + 1} {r:g}\n" for u, i, r in rows)
    return (f"%%MatrixMarket matrix coordinate real general\n% a comment\n"
            f"{len(us)} {len(its)} {len(rows)}\n" + body)


WRITERS = {"udata": _udata, "colons": _colons, "csv": _csv, "triplets": _triplets}


def _triples(rt):
    return sorted(zip(rt.user_ids[rt.users].tolist(), rt.item_ids[rt.items].tolist(),
                      rt.values.tolist()))


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("given", ["auto", "explicit"])
def test_round_trip_each_format(tmp_path, fmt, given):
    path = _write(tmp_path / f"r.{fmt}", WRITERS[fmt](ROWS))
    rt = RT.read_ratings(path, fmt if given == "explicit" else "auto")
    assert rt.format == fmt
    assert RT.detect_format(path) == fmt
    assert _triples(rt) == sorted((u, i, float(np.float32(r))) for u, i, r in ROWS)
    # dense ids and sorted maps
    assert rt.users.dtype == np.int32 and rt.items.dtype == np.int32
    assert rt.values.dtype == np.float32
    assert list(rt.user_ids) == sorted({u for u, _, _ in ROWS})
    assert list(rt.item_ids) == sorted({i for _, i, _ in ROWS})
    assert rt.n_users == 4 and rt.n_items == 3 and len(rt) == len(ROWS)
    assert rt.users.max() == rt.n_users - 1 and rt.items.max() == rt.n_items - 1


def test_matrixmarket_round_trip_and_auto(tmp_path):
    path = _write(tmp_path / "r.mtx", _mm(ROWS))
    rt = RT.read_ratings(path)
    assert rt.format == "mm"
    us = sorted({u for u, _, _ in ROWS})
    its = sorted({i for _, i, _ in ROWS})
    want = sorted((us.index(u) + 1, its.index(i) + 1, float(np.float32(r))) for u, i, r in ROWS)
    assert _triples(rt) == want


def test_gzip_and_blank_lines_and_crlf(tmp_path):
    text = "\n" + _udata(ROWS[:3]).replace("\n", "\r\n") + "\n  \n" + _udata(ROWS[3:])
    path = _write(tmp_path / "u.data.gz", text, gz=True)
    rt = RT.read_ratings(path)
    assert _triples(rt) == sorted((u, i, float(np.float32(r))) for u, i, r in ROWS)


def test_udata_with_a_header_line(tmp_path):
    p = _write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\t"
               "timestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    rt = RT.read_ratings(p)
    assert rt.format == "udata"
    assert _triples(rt) == [(186, 302, 3.0), (196, 242, 3.0)]
    p = _write(tmp_path / "bad.inter", "user\titem\trating\n1\t2\t3\n1\t2\tx\n")
    with pytest.raises(InputError, match=r"bad\.inter:3: rating 'x'"):
        RT.read_ratings(p)


def test_csv_columns_found_by_name_and_headerless(tmp_path):
    p = _write(tmp_path / "a.csv", "rating,item,user\n4.5,10,1\n2,11,2\n")
    rt = RT.read_ratings(p)
    assert _triples(rt) == [(1, 10, 4.5), (2, 11, 2.0)]
    p = _write(tmp_path / "b.csv", "1,10,4.5\n2,11,2\n")
    assert _triples(RT.read_ratings(p, "csv")) == [(1, 10, 4.5), (2, 11, 2.0)]


def test_numbers_parse_like_python(tmp_path):
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.normal(0, 1e3, 300), rng.normal(0, 1e-3, 300),
                           [0.1, 1e-7, 123456.789, 5, -0.0, 3.4e38]])
    texts = [repr(float(v)) for v in vals] + ["1E2", "+2.5", "-.5", "7.", "0.30000000000000004"]
    body = "".join(f"{n} 1 {t}\n" for n, t in enumerate(texts))
    rt = RT.read_ratings(_write(tmp_path / "f.txt", body), "triplets")
    got = rt.values[np.argsort(rt.user_ids[rt.users])]
    want = np.array([float(t) for t in texts], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_large_file_is_fast(tmp_path):
    n = 300_000
    rng = np.random.default_rng(1)
    u = rng.integers(0, 5000, n)
    i = rng.integers(0, 3000, n)
    r = rng.integers(1, 11, n) / 2
    path = tmp_path / "big.dat"
    with open(path, "w") as f:
        np.savetxt(f, np.c_[u, i, r], fmt=["%d", "%d", "%.1f"], delimiter="::")
    import time
    RT.read_ratings(_write(tmp_path / "tiny.dat", "1::2::3\n"))  # compile/cache load
    t = time.perf_counter()
    rt = RT.read_ratings(path)
    assert time.perf_counter() - t < 10.0
    assert len(rt) == n
    np.testing.assert_array_equal(rt.user_ids[rt.users], u)
    np.testing.assert_array_equal(rt.values, r.astype(np.float32))


# ------------------------------------------------------------- bad input
BAD = [
    # (name, file text, fmt, line, words in the message)
    ("non-numeric rating", "1\t2\t3\n1\t3\tgood\n", "auto", 2, ["'good'", "not a number"]),
    ("non-numeric id", "1 2 3\n1 x 3\n", "triplets", 2, ["'x'", "integer"]),
    ("fractional id", "1::2::3\n4::5.5::3\n", "auto", 2, ["'5.5'", "integer"]),
    ("nan rating", "1,2,3\n3,4,NaN\n", "csv", 2, ["NaN", "finite"]),
    ("inf rating", "1 2 3\n\n1 3 -inf\n", "triplets", 3, ["'-inf'", "finite"]),
    ("huge rating", "1 2 3\n1 3 1e300\n", "triplets", 2, ["float32"]),
    ("negative user id", "1\t2\t3\n-4\t2\t3\n", "udata", 2, ["negative user", ">= 0"]),
    ("negative item id", "user,item,rating\n1,2,3\n1,-2,3\n", "auto", 3,
     ["negative item", ">= 0"]),
    ("too few fields", "1 2 3\n1 2\n", "triplets", 2, ["expected 3 fields", "found 2"]),
    ("too many fields", "1 2 3\n1 2 3 4\n", "triplets", 2, ["found 4"]),
    ("csv short row", "userId,movieId,rating\n1,2,3\n1,2\n", "csv", 3, ["found 2"]),
    ("empty file", "", "auto", 1, ["empty"]),
    ("blank file", "\n  \n", "udata", 1, ["empty"]),
    ("header only", "userId,movieId,rating\n", "csv", 2, ["no ratings"]),
    ("undetectable", "hello\n", "auto", 1, ["cannot tell the format", "--format"]),
    ("mm wrong header", "%%MatrixMarket matrix array real general\n2 2\n1\n", "mm", 1,
     ["coordinate"]),
    ("mm not mm", "1 2 3\n", "mm", 1, ["MatrixMarket header"]),
    ("mm pattern", "%%MatrixMarket matrix coordinate pattern general\n2 2 1\n1 1\n", "auto", 1,
     ["pattern"]),
    ("mm symmetric", "%%MatrixMarket matrix coordinate real symmetric\n2 2 1\n1 1 3\n", "auto",
     1, ["symmetric"]),
    ("mm bad size line", "%%MatrixMarket matrix coordinate real general\n%c\n2 x 1\n1 1 3\n",
     "auto", 3, ["size line"]),
    ("mm index out of range", "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 3\n"
     "3 1 2\n", "auto", 4, ["outside 1..2"]),
    ("mm zero index", "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 3\n"
     "1 0 2\n", "auto", 4, ["column index 0", "1-based"]),
    ("mm too few entries", "%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 3\n",
     "auto", 4, ["declares 3", "has 1"]),
    ("mm too many entries", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 3\n"
     "2 2 1\n2 1 1\n", "auto", 5, ["more entries"]),
]


@pytest.mark.parametrize("name,text,fmt,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_and_line(tmp_path, name, text, fmt, line, words):
    path = _write(tmp_path / "bad_input.txt", text)
    with pytest.raises(InputError) as ei:
        RT.read_ratings(path, fmt)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(ei.value, ValueError)


def test_unknown_format_and_missing_file(tmp_path):
    path = _write(tmp_path / "x.txt", "1 2 3\n")
    with pytest.raises(InputError, match=r"x\.txt: unknown format 'parquet'.*triplets"):
        RT.read_ratings(path, "parquet")
    with pytest.raises(InputError, match=r"nope\.txt: no such file"):
        RT.read_ratings(tmp_path / "nope.txt")


def test_bad_line_found_deep_in_a_big_file(tmp_path):
    lines = [f"{n % 97} {n % 89} {n % 5 + 1}" for n in range(50_000)]
    lines[43_210] = "12 34 4,5"
    path = _write(tmp_path / "deep.txt", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as ei:
        RT.read_ratings(path)
    assert str(ei.value).startswith(f"{path}:43211:"), str(ei.value)
    assert "'4,5'" in str(ei.value)


# ------------------------------------------------------------ split, maps
def test_split_is_seeded_disjoint_and_complete():
    d = RT.synthetic_ratings(50, 40, 1000, rank=3, seed=2)
    tr, te = RT.train_test_split(d, 0.2, seed=5)
    tr2, te2 = RT.train_test_split(d, 0.2, seed=5)
    _, te3 = RT.train_test_split(d, 0.2, seed=6)
    assert len(te) == 200 and len(tr) == 800
    np.testing.assert_array_equal(te.values, te2.values)
    assert not np.array_equal(te.values, te3.values)
    pairs = lambda x: set(zip(x.users.tolist(), x.items.tolist()))  # noqa: E731
    assert pairs(tr).isdisjoint(pairs(te))
    assert pairs(tr) | pairs(te) == pairs(d)
    assert tr.n_users == d.n_users and te.n_items == d.n_items
    with pytest.raises(InputError, match="test-fraction"):
        RT.train_test_split(d, 1.0, 0)


def test_encode_like_maps_test_ids_and_drops_unknown(tmp_path):
    train = RT.read_ratings(_write(tmp_path / "tr.txt", "5 50 1\n9 60 2\n7 50 3\n"))
    test = RT.read_ratings(_write(tmp_path / "te.txt", "9 50 4\n8 50 5\n7 70 1\n5 60 2\n"))
    enc, dropped = RT.encode_like(test, train.user_ids, train.item_ids)
    assert dropped == 2
    assert _triples(enc) == [(5, 60, 2.0), (9, 50, 4.0)]
    np.testing.assert_array_equal(enc.user_ids, train.user_ids)


def test_synthetic_is_deterministic_and_planted():
    a = RT.synthetic_ratings(300, 200, 20000, rank=5, noise=0.2, seed=3)
    b = RT.synthetic_ratings(300, 200, 20000, rank=5, noise=0.2, seed=3)
    c = RT.synthetic_ratings(300, 200, 20000, rank=5, noise=0.2, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.users, b.users)
    assert not np.array_equal(a.values, c.values)
    assert len(set(zip(a.users.tolist(), a.items.tolist()))) == len(a)  # distinct cells
    U, V = a.truth["U"], a.truth["V"]
    resid = a.values - (3.5 + np.einsum("nk,nk->n", U[a.users], V[a.items]))
    assert abs(resid.std() - 0.2) < 0.01          # exactly the planted noise
    assert abs(a.values.std() - np.sqrt(1 + 0.04)) < 0.1  # unit-variance signal
    assert a.n_users == 300 and a.n_items == 200
    with pytest.raises(InputError):
        RT.synthetic_ratings(2, 2, 5, rank=1)
