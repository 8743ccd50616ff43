"""Options shared by the staleness sweeps (``mf_staleness``, ``lda_staleness``)."""


def add_run_options(p, job, example, png):
    """Extra job arguments, the per-run timeout and where results go."""
    p.add_argument("--job-arg", action="append", default=[],
                   help=f"extra {job} argument (repeat; e.g. --job-arg={example})")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--out", default=png, help="PNG plot")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--workdir", default=None,
                   help="keep the job outputs here (default: a temporary folder, removed)")


def save_figure(fig, path):
    """Write ``fig`` to ``path`` (creating its folder) and close it."""
    import os
    import matplotlib.pyplot as plt
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
