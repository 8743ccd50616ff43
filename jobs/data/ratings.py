"""Rating readers for the matrix-factorisation job, and the built-in data.

A rating set is held as three flat arrays (``Ratings``): dense ``users`` and
``items`` (int32, ``0..n-1``) and ``values`` (float32), plus the id maps
``user_ids[dense] -> raw id`` and ``item_ids[dense] -> raw id`` (int64,
sorted) so that a model can be written with the file's own ids.

Formats (``fmt`` / ``--format``)
---------------------------------
* ``udata``: MovieLens 100k ``u.data``: ``user<TAB>item<TAB>rating[<TAB>time]``,
  optionally after one header line (as in RecBole's ``ml-100k.inter``).
* ``colons``: MovieLens 1M / 10M ``ratings.dat``: ``user::item::rating[::time]``.
* ``csv``: comma-separated with a header line, e.g. ``userId,movieId,rating,timestamp``.
  Columns are found by name (user/userId/user_id/row, item/movieId/item_id/col,
  rating/value/score); without a header, or without those names, the first
  three columns are user, item, rating.
* ``triplets``: whitespace-separated ``row col value`` (Petuum Bosen's MF input).
* ``mm``: MatrixMarket ``coordinate real|integer general``, 1-based indices.
* ``auto``: chosen from the first non-blank line (``%%MatrixMarket`` header,
  ``::``, a comma, a tab, else whitespace triplets).

Ids must be non-negative integers (MatrixMarket: ``1..M`` / ``1..N``) and
ratings finite numbers; files may be gzip-compressed (``.gz``).  Blank lines
are skipped.  Malformed input raises ``InputError`` whose message starts with
``FILE:LINE:`` (1-based line) and says what to fix.

Parsing is one compiled pass over the file's bytes (Numba), which reads
about ten million ratings in a few seconds and locates the first bad line
exactly; the message is then built from that line's text.

``synthetic_ratings`` draws a planted low-rank data set (rank ``rank``
factors + Gaussian noise ``noise``) from a fixed seed: the job's default data.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field

import numpy as np
from numba import njit

try:  # the library's error type, when the core package is present
    from ssp_mpi.errors import InputError
except ImportError:  # pragma: no cover - only before ssp_mpi exists
    class InputError(ValueError):  # TODO: remove once ssp_mpi.errors exists everywhere
        """Malformed input (placeholder until ssp_mpi.errors is available)."""

__all__ = [
    "Ratings", "InputError", "FORMATS", "detect_format", "read_ratings",
    "encode_like", "train_test_split", "synthetic_ratings",
]

FORMATS = ("udata", "colons", "csv", "triplets", "mm")
_ALIASES = {"u.data": "udata", "movielens": "udata", "tab": "udata",
            "ml-1m": "colons", "ml-10m": "colons", "dat": "colons",
            "whitespace": "triplets", "bosen": "triplets",
            "matrixmarket": "mm", "mtx": "mm"}
_USER_NAMES = ("user", "userid", "user_id", "users", "row", "u", "uid")
_ITEM_NAMES = ("item", "itemid", "item_id", "movie", "movieid", "movie_id",
               "items", "col", "column", "i", "iid")
_RATING_NAMES = ("rating", "ratings", "value", "score", "r", "stars")


@dataclass
class Ratings:
    """Ratings with dense ids.  ``len(self)`` is the number of ratings."""

    users: np.ndarray                 # int32, 0..n_users-1
    items: np.ndarray                 # int32, 0..n_items-1
    values: np.ndarray                # float32
    user_ids: np.ndarray              # int64 raw id of each dense user id
    item_ids: np.ndarray              # int64 raw id of each dense item id
    source: str = "memory"
    format: str = ""
    truth: dict = field(default_factory=dict)   # synthetic data: planted factors

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))

    def __len__(self) -> int:
        return int(len(self.values))

    def subset(self, index) -> "Ratings":
        """The ratings at ``index`` with the same id maps."""
        return Ratings(self.users[index], self.items[index], self.values[index],
                       self.user_ids, self.item_ids, self.source, self.format,
                       self.truth)


# ---------------------------------------------------------------- parsing
# Error codes of the compiled parser.
_OK, _E_FIELDS, _E_ID, _E_RATING, _E_NEG, _E_NONFINITE = 0, 1, 2, 3, 4, 5
_SEP_WS, _SEP_COLONS, _SEP_COMMA = 0, 1, 2


@njit(cache=True, inline="always")
def _is_blank(c):
    return c == 32 or c == 9 or c == 13


@njit(cache=True)
def _parse_int(buf, a, b):
    # returns (value, status): status 0 ok, 1 not an integer, 2 negative
    if a >= b:
        return 0, 1
    neg = False
    if buf[a] == 45 or buf[a] == 43:  # '-' or '+'
        neg = buf[a] == 45
        a += 1
        if a >= b:
            return 0, 1
    v = 0
    for j in range(a, b):
        c = buf[j]
        if c < 48 or c > 57:
            return 0, 1
        if v > 99999999999999999:
            return 0, 1
        v = v * 10 + (c - 48)
    if neg and v != 0:
        return -v, 2
    return v, 0


@njit(cache=True)
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@njit(cache=True)
def _parse_float(buf, a, b):
    # returns (value, status): 0 ok, 1 not a number, 2 nan/inf
    if a >= b:
        return 0.0, 1
    neg = False
    if buf[a] == 45 or buf[a] == 43:
        neg = buf[a] == 45
        a += 1
        if a >= b:
            return 0.0, 1
    c0 = _lower(buf[a])
    if c0 == 110 or c0 == 105:  # 'n' / 'i': nan, inf, infinity?
        n = b - a
        if n == 3 and c0 == 110 and _lower(buf[a + 1]) == 97 and _lower(buf[a + 2]) == 110:
            return np.nan, 2
        if (n == 3 or n == 8) and c0 == 105 and _lower(buf[a + 1]) == 110 \
                and _lower(buf[a + 2]) == 102:
            return np.inf, 2
        return 0.0, 1
    mant = 0
    ndig = 0
    exp10 = 0
    j = a
    seen = False
    while j < b and 48 <= buf[j] <= 57:
        if ndig < 18:
            mant = mant * 10 + (buf[j] - 48)
            if mant != 0:
                ndig += 1
        else:
            exp10 += 1
        seen = True
        j += 1
    if j < b and buf[j] == 46:  # '.'
        j += 1
        while j < b and 48 <= buf[j] <= 57:
            if ndig < 18:
                mant = mant * 10 + (buf[j] - 48)
                if mant != 0:
                    ndig += 1
                exp10 -= 1
            seen = True
            j += 1
    if not seen:
        return 0.0, 1
    if j < b and (buf[j] == 101 or buf[j] == 69):  # e / E
        j += 1
        eneg = False
        if j < b and (buf[j] == 45 or buf[j] == 43):
            eneg = buf[j] == 45
            j += 1
        if j >= b:
            return 0.0, 1
        e = 0
        while j < b and 48 <= buf[j] <= 57:
            if e < 100000:
                e = e * 10 + (buf[j] - 48)
            j += 1
        exp10 += -e if eneg else e
    if j != b:
        return 0.0, 1
    v = float(mant)
    # exact for mant < 2**53 and |exp10| <= 22 (powers of ten exact in float64)
    if exp10 > 0:
        if exp10 > 308:
            v = np.inf if mant != 0 else 0.0
        else:
            v = v * 10.0 ** exp10
    elif exp10 < 0:
        if exp10 < -340:
            v = 0.0
        elif exp10 >= -22:
            v = v / 10.0 ** (-exp10)
        else:
            v = v / 1e22 / 10.0 ** (-exp10 - 22)
    if not np.isfinite(v):
        return v, 2
    return -v if neg else v, 0


@njit(cache=True)
def _parse(buf, start, sep, col_u, col_i, col_r, min_fields, max_fields, line0,
           cap):
    """Parse rating lines of buf[start:].

    Returns (u, i, r, n, status, line, field): on error ``status`` is an
    error code, ``line`` the 1-based line number (``line0`` is the number of
    the line at ``start``) and ``field`` the 0-based field index.
    """
    u = np.empty(cap, np.int64)
    it = np.empty(cap, np.int64)
    r = np.empty(cap, np.float64)
    n = 0
    L = buf.shape[0]
    pos = start
    line = line0
    fstart = np.empty(64, np.int64)
    fend = np.empty(64, np.int64)
    while pos < L:
        # find end of line
        e = pos
        while e < L and buf[e] != 10:
            e += 1
        # split fields in [pos, e)
        nf = 0
        j = pos
        blank = True
        if sep == _SEP_WS:
            while j < e:
                while j < e and _is_blank(buf[j]):
                    j += 1
                if j >= e:
                    break
                a = j
                while j < e and not _is_blank(buf[j]):
                    j += 1
                if nf < 64:
                    fstart[nf] = a
                    fend[nf] = j
                nf += 1
            blank = nf == 0
        else:
            for q in range(pos, e):
                if not _is_blank(buf[q]):
                    blank = False
                    break
            if not blank:
                a = pos
                while True:
                    if sep == _SEP_COMMA:
                        k = a
                        while k < e and buf[k] != 44:
                            k += 1
                        nxt = k + 1
                    else:
                        k = a
                        while k < e and not (buf[k] == 58 and k + 1 < e and buf[k + 1] == 58):
                            k += 1
                        nxt = k + 2
                    # trim blanks
                    s0 = a
                    s1 = k
                    while s0 < s1 and _is_blank(buf[s0]):
                        s0 += 1
                    while s1 > s0 and _is_blank(buf[s1 - 1]):
                        s1 -= 1
                    if nf < 64:
                        fstart[nf] = s0
                        fend[nf] = s1
                    nf += 1
                    if k >= e:
                        break
                    a = nxt
        if not blank:
            if nf < min_fields or nf > max_fields:
                return u, it, r, n, _E_FIELDS, line, nf
            if n >= cap:
                return u, it, r, n, _E_FIELDS, line, -1
            vu, su = _parse_int(buf, fstart[col_u], fend[col_u])
            if su == 1:
                return u, it, r, n, _E_ID, line, col_u
            if su == 2:
                return u, it, r, n, _E_NEG, line, col_u
            vi, si = _parse_int(buf, fstart[col_i], fend[col_i])
            if si == 1:
                return u, it, r, n, _E_ID, line, col_i
            if si == 2:
                return u, it, r, n, _E_NEG, line, col_i
            vr, sr = _parse_float(buf, fstart[col_r], fend[col_r])
            if sr == 1:
                return u, it, r, n, _E_RATING, line, col_r
            if sr == 2:
                return u, it, r, n, _E_NONFINITE, line, col_r
            u[n] = vu
            it[n] = vi
            r[n] = vr
            n += 1
        pos = e + 1
        line += 1
    return u, it, r, n, _OK, line, 0


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the --data/--test path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give the ratings file itself") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc}); check the file") from None


def _lines_head(data: bytes, limit: int = 1 << 16):
    """(line_number, text) of the first lines (for detection and headers)."""
    head = data[:limit].decode("utf-8", errors="replace").split("\n")
    return list(enumerate(head, start=1))


def _first_nonblank(data: bytes):
    for no, text in _lines_head(data):
        if text.strip():
            return no, text.strip("\r")
    return None, None


def _line_text(data: bytes, line: int) -> str:
    start = 0
    for _ in range(line - 1):
        start = data.find(b"\n", start)
        if start < 0:
            return ""
        start += 1
    end = data.find(b"\n", start)
    text = data[start:end if end >= 0 else len(data)].decode("utf-8", errors="replace")
    text = text.strip("\r\n")
    return text if len(text) <= 120 else text[:117] + "..."


def _canonical(fmt: str, path) -> str:
    f = str(fmt).strip().lower()
    f = _ALIASES.get(f, f)
    if f != "auto" and f not in FORMATS:
        raise InputError(
            f"{path}: unknown format {fmt!r}; use --format with one of "
            f"auto, {', '.join(FORMATS)}")
    return f


def detect_format(path, data: bytes | None = None) -> str:
    """The format of a ratings file, from its first non-blank line."""
    if data is None:
        data = _read_bytes(path)
    no, text = _first_nonblank(data)
    if no is None:
        raise InputError(f"{path}:1: the file is empty (no ratings); "
                         "give a file with one rating per line")
    if text.startswith("%%MatrixMarket") or text.lower().startswith("%%matrixmarket"):
        return "mm"
    if "::" in text:
        return "colons"
    if "," in text:
        return "csv"
    if "\t" in text:
        return "udata"
    if len(text.split()) >= 3:
        return "triplets"
    raise InputError(
        f"{path}:{no}: cannot tell the format from {text[:60]!r}; expected "
        "'user item rating' fields separated by tabs, spaces, '::' or commas, "
        "or a %%MatrixMarket header; use --format to name it")


_FMT_HELP = {
    "udata": "'user<TAB>item<TAB>rating[<TAB>timestamp]'",
    "colons": "'user::item::rating[::timestamp]'",
    "csv": "'user,item,rating[,...]'",
    "triplets": "'row col value'",
    "mm": "'row col value' (1-based)",
}


def _raise_parse_error(path, data, fmt, status, line, fieldno, names, min_f, max_f):
    text = _line_text(data, line)
    where = f"{path}:{line}"
    shape = _FMT_HELP[fmt]
    if status == _E_FIELDS:
        if fieldno < 0:
            raise InputError(f"{where}: more entries than the header declares; "
                             "fix the MatrixMarket size line")
        want = str(min_f) if min_f == max_f else f"{min_f} to {max_f}"
        raise InputError(f"{where}: expected {want} fields, found {fieldno} in "
                         f"{text!r}; each line must be {shape}")
    field_text = _field(text, fmt, fieldno)
    what = names[fieldno] if fieldno < len(names) else f"field {fieldno + 1}"
    if status == _E_ID:
        raise InputError(f"{where}: {what} id {field_text!r} is not a non-negative "
                         f"integer; ids must be whole numbers (line {text!r})")
    if status == _E_NEG:
        lo = "1" if fmt == "mm" else "0"
        raise InputError(f"{where}: negative {what} id {field_text!r}; ids must be "
                         f">= {lo} (line {text!r})")
    if status == _E_RATING:
        raise InputError(f"{where}: rating {field_text!r} is not a number; each "
                         f"line must be {shape} (line {text!r})")
    if status == _E_NONFINITE:
        raise InputError(f"{where}: rating {field_text!r} is not finite (NaN or "
                         "infinity); remove the line or give a numeric rating")
    raise InputError(f"{where}: cannot parse {text!r}")  # pragma: no cover


def _field(text, fmt, k):
    if fmt == "colons":
        parts = text.split("::")
    elif fmt == "csv":
        parts = text.split(",")
    else:
        parts = text.split()
    return parts[k].strip() if k < len(parts) else ""


def _csv_header(fields):
    names = [f.strip().strip('"').strip("'").lower() for f in fields]

    def find(cands, default):
        for j, nm in enumerate(names):
            if nm in cands:
                return j
        return default
    cu = find(_USER_NAMES, 0)
    ci = find(_ITEM_NAMES, 1)
    cr = find(_RATING_NAMES, 2)
    if len({cu, ci, cr}) < 3:
        cu, ci, cr = 0, 1, 2
    return cu, ci, cr


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _mm_header(path, data):
    """(start byte, first data line, M, N, NNZ) after the MatrixMarket header."""
    lines = data.split(b"\n", 1)
    first = lines[0].decode("utf-8", errors="replace").strip()
    tok = first.lower().split()
    if len(tok) != 5 or tok[0] != "%%matrixmarket" or tok[1] != "matrix":
        raise InputError(f"{path}:1: not a MatrixMarket header: {first[:80]!r}; the "
                         "first line must be '%%MatrixMarket matrix coordinate real general'")
    if tok[2] != "coordinate":
        raise InputError(f"{path}:1: MatrixMarket '{tok[2]}' format is not supported; "
                         "ratings must be in 'coordinate' format")
    if tok[3] not in ("real", "integer", "double"):
        raise InputError(f"{path}:1: MatrixMarket field '{tok[3]}' has no usable "
                         "ratings; use 'real' or 'integer'")
    if tok[4] != "general":
        raise InputError(f"{path}:1: MatrixMarket symmetry '{tok[4]}' is not supported "
                         "for ratings; use 'general'")
    pos = 0
    line = 1
    L = len(data)
    while pos < L:
        e = data.find(b"\n", pos)
        e = L if e < 0 else e
        text = data[pos:e].decode("utf-8", errors="replace").strip()
        if line > 1 and text and not text.startswith("%"):
            parts = text.split()
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                raise InputError(f"{path}:{line}: bad MatrixMarket size line {text[:80]!r}; "
                                 "expected 'ROWS COLS ENTRIES' (three non-negative integers)")
            M, N, NNZ = (int(p) for p in parts)
            return e + 1, line + 1, M, N, NNZ
        pos = e + 1
        line += 1
    raise InputError(f"{path}:{line}: MatrixMarket file has no size line; add "
                     "'ROWS COLS ENTRIES' after the header")


def read_ratings(path, fmt: str = "auto") -> Ratings:
    """Read a ratings file; ids are remapped to dense ``0..n-1``.

    Raises ``InputError`` (``FILE:LINE: what; how to fix``) on bad input.
    """
    path = os.fspath(path)
    fmt = _canonical(fmt, path)
    data = _read_bytes(path)
    if not data.strip():
        raise InputError(f"{path}:1: the file is empty (no ratings); "
                         "give a file with one rating per line")
    if fmt == "auto":
        fmt = detect_format(path, data)
    buf = np.frombuffer(data, dtype=np.uint8)
    start, line0 = 0, 1
    cu, ci, cr = 0, 1, 2
    names = ["user", "item", "rating"]
    mm = None
    if fmt == "udata":
        sep, min_f, max_f = _SEP_WS, 3, 4
        no, text = _first_nonblank(data)
        first = text.split()
        if first and not (_is_number(first[0]) and len(first) > 1 and _is_number(first[1])):
            # a header line (e.g. RecBole's 'user_id:token<TAB>item_id:token...')
            start, line0 = _offset_after_line(data, no), no + 1
    elif fmt == "triplets":
        sep, min_f, max_f = _SEP_WS, 3, 3
        names = ["row", "column", "value"]
    elif fmt == "colons":
        sep, min_f, max_f = _SEP_COLONS, 3, 4
    elif fmt == "csv":
        sep = _SEP_COMMA
        no, text = _first_nonblank(data)
        fields = text.split(",")
        if len(fields) < 3:
            raise InputError(f"{path}:{no}: expected at least 3 comma-separated "
                             f"columns, found {len(fields)} in {text[:80]!r}; the CSV "
                             "needs user, item and rating columns")
        if len(fields) > 64:
            raise InputError(f"{path}:{no}: {len(fields)} columns; at most 64 are "
                             "supported, keep only user, item and rating")
        min_f = max_f = len(fields)
        if not (_is_number(fields[0].strip()) and _is_number(fields[1].strip())):
            cu, ci, cr = _csv_header(fields)
            start, line0 = _offset_after_line(data, no), no + 1
        names = [""] * max_f
        names[cu], names[ci], names[cr] = "user", "item", "rating"
    else:  # mm
        start, line0, M, N, NNZ = _mm_header(path, data)
        sep, min_f, max_f = _SEP_WS, 3, 3
        names = ["row", "column", "value"]
        mm = (M, N, NNZ)
    cap = data.count(b"\n", start) + 1
    if mm is not None:
        cap = min(cap, mm[2] + 1)
    u, it, r, n, status, line, fieldno = _parse(
        buf, start, sep, cu, ci, cr, min_f, max_f, line0, cap)
    if mm is not None and status == _E_FIELDS and fieldno < 0:
        raise InputError(f"{path}:{line}: more entries than the {mm[2]} declared in "
                         "the MatrixMarket size line; fix the size line")
    if status != _OK:
        _raise_parse_error(path, data, fmt, status, line, fieldno, names, min_f, max_f)
    if n == 0:
        raise InputError(f"{path}:{line0}: no ratings found after the header; "
                         "give one rating per line")
    u, it, r = u[:n], it[:n], r[:n]
    if mm is not None:
        M, N, NNZ = mm
        if n != NNZ:
            raise InputError(f"{path}:{line}: the size line declares {NNZ} entries "
                             f"but the file has {n}; fix the size line or the data")
        for arr, lim, what, col in ((u, M, "row", 0), (it, N, "column", 1)):
            bad = np.flatnonzero((arr < 1) | (arr > lim))
            if bad.size:
                ln = _nth_data_line(data, start, line0, int(bad[0]))
                raise InputError(f"{path}:{ln}: {what} index {int(arr[bad[0]])} is "
                                 f"outside 1..{lim}; MatrixMarket indices are 1-based "
                                 "and must fit the size line")
    with np.errstate(over="ignore"):
        vals = r.astype(np.float32)
    if not np.all(np.isfinite(vals)):
        j = int(np.flatnonzero(~np.isfinite(vals))[0])
        ln = _nth_data_line(data, start, line0, j)
        raise InputError(f"{path}:{ln}: rating {r[j]!r} does not fit in float32; "
                         "give ratings of a sensible magnitude")
    user_ids, users = np.unique(u, return_inverse=True)
    item_ids, items = np.unique(it, return_inverse=True)
    return Ratings(users.astype(np.int32), items.astype(np.int32), vals,
                   user_ids.astype(np.int64), item_ids.astype(np.int64),
                   source=path, format=fmt)


def _offset_after_line(data, no):
    """Byte offset of the start of line ``no + 1`` (1-based ``no``)."""
    off = 0
    for _ in range(no):
        nl = data.find(b"\n", off)
        if nl < 0:
            return len(data)
        off = nl + 1
    return off


def _nth_data_line(data, start, line0, j):
    """1-based line number of the j-th (0-based) non-blank line after start."""
    line = line0
    pos = start
    seen = -1
    L = len(data)
    while pos <= L:
        e = data.find(b"\n", pos)
        e = L if e < 0 else e
        if data[pos:e].strip():
            seen += 1
            if seen == j:
                return line
        pos = e + 1
        line += 1
    return line  # pragma: no cover


def encode_like(ratings: Ratings, user_ids, item_ids):
    """Re-express ``ratings`` with another set's id maps.

    Returns ``(Ratings, n_dropped)``: ratings whose raw user or item id is
    not in ``user_ids``/``item_ids`` (cold start) are dropped.
    """
    ru = ratings.user_ids[ratings.users]
    ri = ratings.item_ids[ratings.items]
    pu = np.searchsorted(user_ids, ru)
    pi = np.searchsorted(item_ids, ri)
    pu_c = np.minimum(pu, max(len(user_ids) - 1, 0))
    pi_c = np.minimum(pi, max(len(item_ids) - 1, 0))
    ok = (pu < len(user_ids)) & (pi < len(item_ids))
    if len(user_ids):
        ok &= user_ids[pu_c] == ru
    if len(item_ids):
        ok &= item_ids[pi_c] == ri
    out = Ratings(pu[ok].astype(np.int32), pi[ok].astype(np.int32),
                  ratings.values[ok], np.asarray(user_ids, np.int64),
                  np.asarray(item_ids, np.int64), ratings.source, ratings.format)
    return out, int((~ok).sum())


def train_test_split(ratings: Ratings, test_fraction: float, seed: int):
    """Seeded random split; both parts keep the full id maps.

    ``test_fraction`` in [0, 1).  The same (data, fraction, seed) always
    gives the same split.
    """
    if not 0.0 <= float(test_fraction) < 1.0:
        raise InputError(f"--test-fraction {test_fraction}: must be in [0, 1)")
    n = len(ratings)
    perm = np.random.default_rng([int(seed), 7919]).permutation(n)
    n_test = int(round(n * float(test_fraction)))
    test_idx = np.sort(perm[:n_test])
    train_idx = np.sort(perm[n_test:])
    return ratings.subset(train_idx), ratings.subset(test_idx)


def synthetic_ratings(n_users: int = 2000, n_items: int = 1000,
                      n_ratings: int = 100_000, rank: int = 8,
                      noise: float = 0.25, seed: int = 0, mean: float = 3.5,
                      distinct: bool = True) -> Ratings:
    """Planted low-rank ratings: ``mean + U[u] . V[i] + N(0, noise^2)``.

    ``U`` and ``V`` have i.i.d. ``N(0, rank**-0.5)`` entries, so the planted
    part has unit variance; (user, item) pairs are uniform (distinct when
    ``distinct`` and there is room).  Deterministic in ``seed``.  The planted
    factors are in ``.truth`` (``U``, ``V``, ``noise``, ``mean``).  The best
    achievable RMSE on fresh ratings is ``noise``.
    """
    n_users, n_items, n_ratings, rank = int(n_users), int(n_items), int(n_ratings), int(rank)
    if n_users < 1 or n_items < 1 or n_ratings < 1 or rank < 1 or noise < 0:
        raise InputError(f"synthetic data: sizes and rank must be >= 1 and noise >= 0 "
                         f"(got users={n_users} items={n_items} ratings={n_ratings} "
                         f"rank={rank} noise={noise})")
    rng = np.random.default_rng([int(seed), 4242])
    total = n_users * n_items
    if distinct and n_ratings > total:
        raise InputError(f"synthetic data: {n_ratings} distinct ratings do not fit in "
                         f"{n_users} x {n_items}; lower --synthetic-ratings")
    if distinct:
        if n_ratings * 4 > total:
            cells = rng.permutation(total)[:n_ratings]
        else:
            # draw with a margin, drop repeats, keep first n_ratings in draw order
            cells = np.empty(0, np.int64)
            while cells.size < n_ratings:
                extra = rng.integers(0, total, int((n_ratings - cells.size) * 1.1) + 16)
                cells = np.concatenate([cells, extra])
                _, first = np.unique(cells, return_index=True)
                cells = cells[np.sort(first)]
            cells = cells[:n_ratings]
        users = (cells // n_items).astype(np.int32)
        items = (cells % n_items).astype(np.int32)
    else:
        users = rng.integers(0, n_users, n_ratings).astype(np.int32)
        items = rng.integers(0, n_items, n_ratings).astype(np.int32)
    scale = rank ** -0.25
    U = (rng.standard_normal((n_users, rank)) * scale).astype(np.float32)
    V = (rng.standard_normal((n_items, rank)) * scale).astype(np.float32)
    vals = np.empty(n_ratings, np.float32)
    step = 1 << 20
    for a in range(0, n_ratings, step):
        b = min(a + step, n_ratings)
        vals[a:b] = np.einsum("nk,nk->n", U[users[a:b]], V[items[a:b]])
    vals += np.float32(mean)
    vals += (rng.standard_normal(n_ratings) * noise).astype(np.float32)
    return Ratings(users, items, vals, np.arange(n_users, dtype=np.int64),
                   np.arange(n_items, dtype=np.int64), source="synthetic",
                   format="synthetic",
                   truth={"U": U, "V": V, "noise": float(noise), "mean": float(mean),
                          "rank": rank, "seed": int(seed)})


def warmup():
    """Compile the parser into Numba's on-disk cache."""
    buf = np.frombuffer(b"1 2 3.5e0\n", dtype=np.uint8)
    for sep in (_SEP_WS, _SEP_COLONS, _SEP_COMMA):
        _parse(buf, 0, sep, 0, 1, 2, 3, 4, 1, 2)
