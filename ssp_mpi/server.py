"""The server side: owns the shards and waits politely.

A server's memory is read and written by the workers' one-sided operations;
the server itself only has to keep MPI's progress engine turning (so that
accumulates also complete when they arrive over a network, where MPICH may
need the target to make progress) and wait for the end of the run.  It does
so by testing a pending request and sleeping between tests: an idle server
costs a small fraction of a core.  When no one-sided operation needs it
(every rank on one node, MPICH's shared-memory path: ``mpienv.shared_memory_rma``)
it sleeps longer between tests, so that on a node with no core to spare it
seldom preempts a worker.
"""
import logging

from . import mpienv

log = logging.getLogger("ssp_mpi.server")


class Server:
    def __init__(self, session):
        self.session = session
        self.index = session.layout.server_index
        self.hooks = []          # callables run between polls (e.g. checkpoints)

    def serve(self, done):
        """Poll until ``done`` (a request completed when the workers finish)."""
        local = mpienv.shared_memory_rma(self.session.layout.n_nodes)
        backoff = mpienv.Backoff(first=200e-6, maximum=mpienv.server_poll_interval(local))
        polls = 0
        while not done.Test():
            for hook in self.hooks:
                if hook():
                    backoff.reset()
            backoff.sleep()
            polls += 1
        log.debug("server %d done after %d polls", self.index, polls)
