"""Job outputs, written so that a folder is either complete or absent.

``OutputDir(path)`` collects files in ``<path>.partial-<pid>`` and, on
``commit()``, atomically swaps it into place (a previous folder of the same
name is replaced only then).  If the job fails, the partial folder is
removed and an existing older output stays untouched.
"""
import json
import math
import os
import shutil
from pathlib import Path


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


class OutputDir:
    def __init__(self, path):
        self.final = Path(path)
        self.tmp = self.final.with_name(f"{self.final.name}.partial-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._metrics = {}                    # file name -> open handle

    def path(self, name):
        return self.tmp / name

    def write_json(self, name, obj):
        with open(self.path(name), "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
            f.write("\n")

    def append_metrics(self, record, name="metrics.jsonl"):
        """Append one JSON line to ``name`` (one open handle per file)."""
        f = self._metrics.get(name)
        if f is None:
            f = self._metrics[name] = open(self.path(name), "a", encoding="utf-8")
        f.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
        f.flush()

    def _close_metrics(self):
        for f in self._metrics.values():
            f.close()
        self._metrics = {}

    def write_text(self, name, text):
        self.path(name).write_text(text, encoding="utf-8")

    def commit(self):
        """Atomically put the folder in place; returns its final path."""
        self._close_metrics()
        old = None
        if self.final.exists():
            old = self.final.with_name(f"{self.final.name}.old-{os.getpid()}")
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self):
        self._close_metrics()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if exc is None:
            self.commit()
        else:
            self.discard()
