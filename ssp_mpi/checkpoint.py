"""HDF5 checkpoints: a consistent cut of all tables and every worker's state.

A checkpoint is a folder ``<dir>/ckpt-<clock>``::

    shard-<s>.h5    server s: /tables/<name>/rows (global ids), /tables/<name>/values
    worker-<w>.h5   worker w: /state/<key> (the job's local state)
    master.h5       attrs: format, version, clock, config, layout, tables,
                    checksums; /tables/<name>: a *virtual* dataset showing the
                    whole logical table (rows x cols), assembled from the shards

Crash safety: everything is written into ``ckpt-<clock>.tmp-<id>``, each file
is fsynced, the folder is renamed to its final name only when complete, and
``LATEST`` (the newest folder's name) is replaced atomically.  A reader
verifies every file and a CRC32 of every dataset before trusting a
checkpoint: an HDF5 virtual dataset silently reads a missing source as the
fill value, so existence and checksums are checked first.

Any HDF5 tool reads it: ``h5dump -d /tables/W ckpt-000000010/master.h5``,
``h5py.File(...)["tables/W"][...]``.
"""
import json
import logging
import os
import re
import shutil
import time
import zlib
from pathlib import Path

import h5py
import numpy as np

from .errors import SSPError

log = logging.getLogger("ssp_mpi.checkpoint")
FORMAT = "ssp-mpi-checkpoint"
VERSION = 1
NAME_RE = re.compile(r"^ckpt-(\d{9})$")


class CheckpointError(SSPError, ValueError):
    """A checkpoint is missing, incomplete or damaged, or could not be
    written; the message names it.  Raised on every rank together."""
    collective = True


def name_for(clock):
    return f"ckpt-{int(clock):09d}"


def crc(array):
    a = np.ascontiguousarray(array)
    return zlib.crc32(a.view(np.uint8).reshape(-1) if a.size else b"") & 0xFFFFFFFF


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    try:
        _fsync_file(path)
    except OSError:          # some file systems cannot fsync folders
        pass


def _write_datasets(path, group, items):
    """Write {key: array} into ``group`` of a new file; returns checksums."""
    sums = {}
    with h5py.File(path, "w") as f:
        g = f.require_group(group)
        for key, value in items.items():
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind in "US":
                raise TypeError(f"checkpoint state '{key}' must be numeric arrays or scalars, "
                                f"got dtype {arr.dtype}")
            g.create_dataset(key, data=arr)
            sums[f"{group}/{key}"] = crc(arr)
    _fsync_file(path)
    return sums


def write_shard(tmpdir, server, tables):
    """Server ``server`` writes ``{name: (global_rows, values)}``."""
    items = {}
    for name, (rows, values) in tables.items():
        items[f"{name}/rows"] = np.asarray(rows, np.int64)
        items[f"{name}/values"] = values
    path = Path(tmpdir) / f"shard-{server}.h5"
    return {path.name: _write_datasets(path, "tables", items)}


def write_worker(tmpdir, worker, state):
    path = Path(tmpdir) / f"worker-{worker}.h5"
    return {path.name: _write_datasets(path, "state", dict(state or {}))}


def begin(root, clock, token):
    """Create the temporary folder of a checkpoint at ``clock``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{name_for(clock)}.tmp-{token}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def finish(tmpdir, meta, checksums, keep):
    """Write master.h5, publish the folder atomically, update LATEST, prune.
    ``meta`` has clock, config, layout and tables (name -> rows, cols, dtype)."""
    tmpdir = Path(tmpdir)
    root = tmpdir.parent
    n_servers = meta["layout"]["n_servers"]
    master = tmpdir / "master.h5"
    with h5py.File(master, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["clock"] = int(meta["clock"])
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for key in ("config", "layout", "tables"):
            f.attrs[key] = json.dumps(meta[key], sort_keys=True)
        f.attrs["checksums"] = json.dumps(checksums, sort_keys=True)
        g = f.create_group("tables")
        for name, t in meta["tables"].items():
            layout = h5py.VirtualLayout(shape=(t["rows"], t["cols"]), dtype=t["dtype"])
            for s in range(n_servers):
                m = len(range(s, t["rows"], n_servers))
                if m == 0:
                    continue
                src = h5py.VirtualSource(f"shard-{s}.h5", f"tables/{name}/values",
                                         shape=(m, t["cols"]))
                layout[s::n_servers, :] = src
            g.create_virtual_dataset(name, layout, fillvalue=0)
    _fsync_file(master)
    _fsync_dir(tmpdir)
    final = root / name_for(meta["clock"])
    if final.exists():                    # an older attempt at the same clock
        shutil.rmtree(final)
    os.rename(tmpdir, final)
    _fsync_dir(root)
    latest_tmp = root / f"LATEST.tmp-{os.getpid()}"
    latest_tmp.write_text(final.name + "\n")
    _fsync_file(latest_tmp)
    os.replace(latest_tmp, root / "LATEST")
    _fsync_dir(root)
    prune(root, keep)
    return final


def prune(root, keep):
    """Keep the newest ``keep`` complete checkpoints; drop leftovers of
    interrupted writes."""
    root = Path(root)
    done = sorted(p for p in root.iterdir() if NAME_RE.match(p.name))
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob("ckpt-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


class Checkpoint:
    """A verified checkpoint folder (``Checkpoint.open`` checks it)."""

    def __init__(self, path, attrs):
        self.path = Path(path)
        self.clock = int(attrs["clock"])
        self.config = json.loads(attrs["config"])
        self.layout = json.loads(attrs["layout"])
        self.tables = json.loads(attrs["tables"])
        self.checksums = json.loads(attrs["checksums"])

    @classmethod
    def open(cls, path, verify=True):
        path = Path(path)
        master = path / "master.h5"
        if not master.exists():
            raise CheckpointError(f"{path}: no master.h5 (incomplete checkpoint)")
        try:
            with h5py.File(master, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise CheckpointError(f"{master}: not an ssp-mpi checkpoint")
                attrs = {k: f.attrs[k] for k in ("clock", "config", "layout", "tables", "checksums")}
        except (OSError, KeyError) as e:
            raise CheckpointError(f"{master}: unreadable ({e})") from None
        ck = cls(path, attrs)
        if verify:
            ck.verify()
        return ck

    def verify(self):
        """Every file present and every dataset matching its checksum."""
        for fname, sums in self.checksums.items():
            fpath = self.path / fname
            if not fpath.exists():
                raise CheckpointError(f"{self.path}: {fname} is missing")
            try:
                with h5py.File(fpath, "r") as f:
                    for dset, want in sums.items():
                        if dset not in f:
                            raise CheckpointError(f"{fpath}: dataset {dset} is missing")
                        if crc(f[dset][()]) != want:
                            raise CheckpointError(f"{fpath}: dataset {dset} fails its checksum")
            except OSError as e:
                raise CheckpointError(f"{fpath}: unreadable ({e})") from None
        for s in range(self.layout["n_servers"]):
            if f"shard-{s}.h5" not in self.checksums:
                raise CheckpointError(f"{self.path}: shard-{s}.h5 is not listed")

    @property
    def n_workers(self):
        return int(self.layout["n_workers"])

    def read_rows(self, table, server, n_servers):
        """Rows ``server::n_servers`` of a table (a new server layout)."""
        t = self.tables[table]
        out = np.empty((len(range(server, t["rows"], n_servers)), t["cols"]), t["dtype"])
        old_n = self.layout["n_servers"]
        # read shard by shard (no dependence on the virtual dataset's fill)
        for s in range(old_n):
            with h5py.File(self.path / f"shard-{s}.h5", "r") as f:
                rows = f[f"tables/{table}/rows"][()]
                mine = (rows % n_servers) == server
                if mine.any():
                    vals = f[f"tables/{table}/values"][()]
                    out[(rows[mine] - server) // n_servers] = vals[mine]
        return out

    def worker_state(self, worker):
        """The saved state of worker ``worker`` as {key: array or scalar}."""
        with h5py.File(self.path / f"worker-{worker}.h5", "r") as f:
            g = f["state"]
            out = {}
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = obj[()]
            g.visititems(visit)
            return out

    def worker_states(self):
        return [self.worker_state(w) for w in range(self.n_workers)]


def find_latest(root):
    """Newest complete and verified checkpoint under ``root``, or None.
    Damaged or incomplete ones are skipped with a warning naming them."""
    root = Path(root)
    if not root.is_dir():
        return None
    candidates = sorted((p for p in root.iterdir() if NAME_RE.match(p.name)), reverse=True)
    latest = root / "LATEST"
    if latest.exists():
        named = root / latest.read_text().strip()
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    for path in candidates:
        try:
            return Checkpoint.open(path)
        except CheckpointError as e:
            log.warning("skipping checkpoint %s: %s", path, e)
    return None


def resolve(spec, root):
    """``--resume`` value -> Checkpoint.  ``spec`` True/"latest" means the
    newest under ``root``; else a checkpoint folder or a root folder."""
    if spec in (True, "latest", "LATEST"):
        ck = find_latest(root)
        if ck is None:
            raise CheckpointError(f"--resume: no complete checkpoint in {root}")
        return ck
    p = Path(spec)
    if (p / "master.h5").exists() or NAME_RE.match(p.name):
        return Checkpoint.open(p)
    ck = find_latest(p)
    if ck is None:
        raise CheckpointError(f"--resume {spec}: no complete checkpoint there")
    return ck
