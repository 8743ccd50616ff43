"""Pure row -> server partition functions.

Rows are dealt out cyclically: row ``r`` lives on server ``r % n`` at local
offset ``r // n``.  Skewed access (e.g. frequent words, which vocabularies
usually number first) is spread instead of piling onto one server: the ``n``
hottest rows of a frequency-sorted table land on ``n`` different servers, and
any contiguous id range splits evenly.  Every function here is pure and
unit-tested; the rest of the library only calls these.
"""
import numpy as np


def check_servers(n_servers):
    if int(n_servers) < 1:
        raise ValueError(f"need at least one server, got {n_servers}")
    return int(n_servers)


def server_of(rows, n_servers):
    """Server index of each global row id."""
    return np.asarray(rows, dtype=np.int64) % check_servers(n_servers)


def local_index(rows, n_servers):
    """Offset of each global row inside its server's shard."""
    return np.asarray(rows, dtype=np.int64) // check_servers(n_servers)


def global_index(local_rows, n_servers, server):
    """Global row id of each offset in ``server``'s shard (inverse of
    ``local_index``)."""
    return np.asarray(local_rows, dtype=np.int64) * check_servers(n_servers) + int(server)


def shard_rows(n_rows, n_servers, server):
    """Number of rows held by ``server``."""
    n = check_servers(n_servers)
    if not 0 <= server < n:
        raise ValueError(f"server {server} out of range 0..{n - 1}")
    return max(0, (int(n_rows) - server + n - 1) // n)


def global_rows(n_rows, n_servers, server):
    """Global row ids held by ``server``, in shard order."""
    return np.arange(server, int(n_rows), check_servers(n_servers), dtype=np.int64)


def split_by_server(rows, n_servers):
    """Group sorted unique ``rows`` by server.

    Returns a list with, for each server, ``(global_rows, local_rows)``; both
    arrays are sorted ascending.
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    owner = server_of(rows, n_servers)
    out = []
    for s in range(n_servers):
        g = rows[owner == s]
        out.append((g, local_index(g, n_servers)))
    return out


def runs(sorted_idx):
    """Contiguous runs of a sorted index array: ``(starts, lengths)``."""
    idx = np.asarray(sorted_idx, dtype=np.int64)
    if idx.size == 0:
        return idx[:0], idx[:0]
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [idx.size]))
    return idx[starts], ends - starts
