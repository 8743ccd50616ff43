"""Compile every Numba kernel once, into Numba's on-disk cache.

Run ``python -m kernels.warm`` before starting many ranks: each cold rank
would otherwise compile for itself (seconds per rank when ranks outnumber
cores).  Each kernel module offers ``warmup()``, which calls its kernels on
tiny inputs.
"""
import importlib
import os
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

MODULES = ("kernels.oplog", "kernels.rows", "kernels.mf", "kernels.lda")


def main():
    for name in MODULES:
        t = time.perf_counter()
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        if hasattr(mod, "warmup"):
            mod.warmup()
            print(f"{name}: ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
