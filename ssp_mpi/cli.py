"""Command-line pieces shared by every job, and the ``ssp-mpi`` command.

``job_parser(prog, description)`` returns an ``argparse`` parser that
already has the options every job spells the same way (``--staleness``,
``--servers``, ``--seed``, ``--out``, ``--straggle``, logging).  It prints
help from one rank only, and turns a bad option into an ``InputError``
raised on every rank (all ranks parse the same command line), so the job
exits with status 2 and one message instead of N copies.
"""
import argparse
import importlib
import logging
import math
import os
import sys

from .config import Config, parse_staleness, parse_straggle
from .errors import InputError
from .failure import launcher_rank

SUBCOMMANDS = {
    "mf": ("jobs.mf", "matrix factorisation by SGD"),
    "lda": ("jobs.lda", "LDA by collapsed Gibbs sampling"),
    "inspect": ("ssp_mpi.inspect", "print a checkpoint's clock, layout and tables"),
    "bench": ("benchmarks.ps_ops", "parameter-server operation costs vs raw RMA"),
}


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" except where there is nothing useful to show
    (flags, None and empty defaults, help that already names its default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (d is None or d is True or d is False or d is argparse.SUPPRESS
                or (isinstance(d, dict) and not d) or "default" in text):
            return text
        return super()._get_help_string(action)


class JobParser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(f"{self.prog}: {message} (see {self.prog} --help)", collective=True)

    def print_help(self, file=None):
        if launcher_rank() == 0:
            super().print_help(file)

    def exit(self, status=0, message=None):
        if message and launcher_rank() == 0:
            sys.stderr.write(message)
        sys.exit(status)


def staleness_arg(text):
    try:
        return parse_staleness(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def straggle_arg(text):
    try:
        return parse_straggle(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def int_at_least(low):
    """An argparse type: an integer >= ``low``."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return v
    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def finite_float(kind, low, open_low):
    """An argparse type: a finite number above ``low`` (``open_low``) or at
    least ``low``; ``kind`` names it in the error message."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or (v <= low if open_low else v < low):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return v
    parse.__name__ = kind
    return parse


positive_float = finite_float("a positive number", 0.0, True)
nonneg_float = finite_float("a number >= 0", 0.0, False)


def job_parser(prog, description):
    p = JobParser(prog=prog, description=description, formatter_class=DefaultsFormatter)
    g = p.add_argument_group("parameter server (every job)")
    g.add_argument("--staleness", type=staleness_arg, default=0,
                   help="SSP staleness s: an integer >= 0 (0 = bulk synchronous) or 'inf' (asynchronous)")
    g.add_argument("--servers", type=positive_int, default=None,
                   help="number of server ranks (default: one per node)")
    g.add_argument("--seed", type=int, default=0, help="random seed (results are reproducible at s=0)")
    g.add_argument("--out", default="out", help="output folder (written atomically at the end)")
    g.add_argument("--straggle", type=straggle_arg, default={}, metavar="W:F[,W:F]",
                   help="slow worker W down by factor F (experiments), e.g. 1:2.0")
    g.add_argument("--no-strict-bsp", dest="strict_bsp", action="store_false",
                   help="at s=0, let a worker push before all others finished reading "
                        "(faster, not bit-reproducible)")
    g.add_argument("--log-level", default=os.environ.get("SSP_MPI_LOG", "WARNING"),
                   help="logging level of every rank (progress is printed by worker 0 regardless)")
    c = p.add_argument_group("checkpoints (every job)")
    c.add_argument("--checkpoint-dir", default=None,
                   help="folder of HDF5 checkpoints (default: OUT-checkpoints, used for "
                        "--checkpoint-every and when SIGTERM/SIGUSR1 ask the job to stop)")
    c.add_argument("--checkpoint-every", type=nonneg_int, default=0, metavar="N",
                   help="write a checkpoint every N clocks (0: only when a signal asks)")
    c.add_argument("--keep", type=positive_int, default=3, metavar="K",
                   help="how many complete checkpoints to keep")
    c.add_argument("--resume", nargs="?", const="latest", default=None, metavar="PATH",
                   help="continue from the newest complete checkpoint in --checkpoint-dir, "
                        "or from PATH (a checkpoint folder or a folder of checkpoints)")
    return p


def config_from_args(args, job_options):
    """A ``Config`` from parsed common options plus the job's own options."""
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s rank%(process)d %(name)s: %(message)s")
    ckdir = args.checkpoint_dir or f"{str(args.out).rstrip('/')}-checkpoints"
    return Config(servers=args.servers, seed=args.seed, straggle=dict(args.straggle),
                  strict_bsp=args.strict_bsp, job=dict(job_options),
                  checkpoint_dir=ckdir, checkpoint_every=args.checkpoint_every, keep=args.keep)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if launcher_rank() == 0:
            print("usage: ssp-mpi COMMAND [OPTIONS]   (under mpiexec -n N for jobs)\n\ncommands:")
            for name, (_, text) in SUBCOMMANDS.items():
                print(f"  {name:<8} {text}")
            print("\nssp-mpi COMMAND --help shows a command's options.")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
