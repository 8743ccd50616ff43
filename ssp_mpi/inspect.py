"""``ssp-mpi inspect CKPT``: what a checkpoint holds.

CKPT is a checkpoint folder (``.../ckpt-000000010``) or a folder of
checkpoints (the newest complete one is shown).  Prints the clock, the world
layout, every table's shape, dtype and a few statistics, the workers' saved
state, and whether every checksum verifies.  No MPI is started.
"""
import argparse
import sys

import h5py
import numpy as np


def main(argv=None):
    from .checkpoint import Checkpoint, CheckpointError, NAME_RE, find_latest
    from pathlib import Path
    p = argparse.ArgumentParser(prog="ssp-mpi inspect", description=__doc__.split("\n")[0])
    p.add_argument("path", help="a checkpoint folder or a folder of checkpoints")
    p.add_argument("--no-verify", action="store_true", help="skip the checksum verification")
    args = p.parse_args(argv)
    path = Path(args.path)
    try:
        if (path / "master.h5").exists() or NAME_RE.match(path.name):
            ck = Checkpoint.open(path, verify=not args.no_verify)
        else:
            ck = find_latest(path)
            if ck is None:
                raise CheckpointError(f"{path}: no complete checkpoint")
    except CheckpointError as e:
        print(f"ssp-mpi inspect: {e}", file=sys.stderr)
        return 2
    lay = ck.layout
    print(f"checkpoint  {ck.path}")
    print(f"clock       {ck.clock}")
    print(f"layout      {lay['n_servers']} server(s) {lay['servers']}, "
          f"{lay['n_workers']} worker(s) {lay['workers']}")
    print(f"verified    {'skipped' if args.no_verify else 'all checksums match'}")
    job = ck.config.get("job") or {}
    if job:
        print("job options " + ", ".join(f"{k}={v}" for k, v in sorted(job.items())))
    print("tables")
    with h5py.File(ck.path / "master.h5", "r") as f:
        for name, t in sorted(ck.tables.items()):
            data = f[f"tables/{name}"][()]
            print(f"  {name:<16} {t['rows']:>9} x {t['cols']:<6} {t['dtype']:<8} "
                  f"staleness={t.get('staleness', '?'):<4} sum={data.sum(dtype=np.float64):.6g} "
                  f"min={data.min():.6g} max={data.max():.6g}")
    print("worker state")
    for w in range(ck.n_workers):
        st = ck.worker_state(w)
        desc = ", ".join(f"{k}{list(np.shape(v)) if np.ndim(v) else '=' + str(v)}"
                         for k, v in sorted(st.items()))
        print(f"  worker {w}: {desc or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
