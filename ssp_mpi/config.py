"""Settings, split into the part every rank must agree on and the local part.

Global settings (``Config`` fields, the table specs and the job's own options)
are compared across ranks when a session starts: a rank started with other
options would otherwise compute with other shapes and hang in a collective.
Local settings (logging, polling intervals) come from environment variables,
documented in the README.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigMismatchError

INF = math.inf
DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64}


def parse_staleness(value):
    """``"3"`` -> 3, ``"inf"`` -> math.inf; raises ValueError otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        s = int(value)
    elif isinstance(value, float) and math.isinf(value) and value > 0:
        return INF
    else:
        text = str(value).strip().lower()
        if text in ("inf", "infinity", "async"):
            return INF
        try:
            s = int(text)
        except ValueError:
            raise ValueError(f"staleness must be a non-negative integer or 'inf', got {value!r}") from None
    if s < 0:
        raise ValueError(f"staleness must be a non-negative integer or 'inf', got {value!r}")
    return s


def parse_straggle(text):
    """``"1:2.0,3:1.5"`` -> {1: 2.0, 3: 1.5} (worker index -> slow-down factor)."""
    out = {}
    if not text:
        return out
    for part in str(text).split(","):
        try:
            w, f = part.split(":")
            w, f = int(w), float(f)
        except ValueError:
            raise ValueError(f"--straggle wants WORKER:FACTOR[,WORKER:FACTOR...], got {text!r}") from None
        if w < 0 or not f >= 1.0:
            raise ValueError(f"--straggle: worker must be >= 0 and factor >= 1, got {part!r}")
        out[w] = f
    return out


@dataclass
class Config:
    """Global settings of a session (must be identical on every rank).

    servers:  number of server ranks; None = one per node.
    seed:     base random seed; worker ``i`` gets a stream derived from (seed, i).
    straggle: {worker index: factor}: that worker's compute is stretched by the
              factor (it sleeps ``(factor - 1) x`` its compute time each clock).
    strict_bsp: at staleness 0, hold each worker's push of clock ``c`` until
              every worker has finished its reads of clock ``c``, so every read
              sees exactly clocks ``0..c-1`` and a run is reproducible.
    job:      the job's own options (any JSON-able dict), checked across ranks.
    checkpoint_dir:   folder of checkpoints (None: no checkpoints; a stop
              signal then stops without writing one)
    checkpoint_every: write a checkpoint every N clocks (0: only on request)
    keep:     how many complete checkpoints to keep
    """
    servers: object = None
    seed: int = 0
    straggle: dict = field(default_factory=dict)
    strict_bsp: bool = True
    job: dict = field(default_factory=dict)
    checkpoint_dir: object = None
    checkpoint_every: int = 0
    keep: int = 3

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["straggle"] = {str(k): v for k, v in sorted(self.straggle.items())}
        d["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        return d


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, default=str)


def first_difference(a, b, prefix=""):
    """Path of the first differing key between two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{prefix}{k}"
            d = first_difference(a[k], b[k], f"{prefix}{k}.")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{prefix}{i}.")
            if d:
                return d
        return None
    return None if _canonical(a) == _canonical(b) else prefix.rstrip(".") or "<value>"


def check_agreement(comm, settings):
    """Collective: raise ``ConfigMismatchError`` on every rank unless all
    ranks pass equal ``settings`` (a JSON-able dict)."""
    mine = json.loads(_canonical(settings))
    everyone = comm.allgather(mine)
    ref = everyone[0]
    bad = [r for r, s in enumerate(everyone) if _canonical(s) != _canonical(ref)]
    if bad:
        r = bad[0]
        key = first_difference(ref, everyone[r])
        raise ConfigMismatchError(
            f"ranks disagree on the global configuration: '{key}' is "
            f"{_lookup(ref, key)!r} on rank 0 but {_lookup(everyone[r], key)!r} on rank(s) "
            f"{', '.join(map(str, bad))}; start every rank with the same options")


def _lookup(d, path):
    for part in (path or "").split("."):
        if isinstance(d, dict) and part in d:
            d = d[part]
        elif isinstance(d, list) and part.isdigit() and int(part) < len(d):
            d = d[int(part)]
        else:
            return "<missing>"
    return d
