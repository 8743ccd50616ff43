"""Which rank is a server and which a worker: decided here and only here.

``plan_layout`` is pure (node of each rank in, roles out) and unit-tested;
``Layout.from_comm`` gathers the node of every rank with
``Split_type(COMM_TYPE_SHARED)`` and checks the plan before anything is
allocated.
"""
from dataclasses import dataclass

from .errors import LayoutError


def plan_layout(node_of_rank, n_servers=None):
    """Choose server ranks.

    ``node_of_rank[r]`` is the node index of world rank ``r``.  Default: one
    server per node (the node's lowest rank).  With ``n_servers`` given,
    servers are taken round-robin over nodes (first the lowest rank of each
    node, then the second lowest, ...) so they spread over the machines.
    Returns the sorted list of server world ranks.
    """
    node_of_rank = [int(n) for n in node_of_rank]
    size = len(node_of_rank)
    nodes = sorted(set(node_of_rank))
    if n_servers is None:
        n_servers = len(nodes)
    n_servers = int(n_servers)
    if n_servers < 1:
        raise LayoutError(f"--servers must be at least 1, got {n_servers}")
    if size < n_servers + 1:
        raise LayoutError(
            f"the MPI world has {size} rank(s) but {n_servers} server(s) and at least one "
            f"worker are needed: start at least {n_servers + 1} ranks "
            f"(e.g. mpiexec -n {n_servers + 1} ...) or pass --servers {max(1, size - 1)}")
    per_node = {n: [r for r in range(size) if node_of_rank[r] == n] for n in nodes}
    order = []
    depth = 0
    while len(order) < size:
        for n in nodes:
            if depth < len(per_node[n]):
                order.append(per_node[n][depth])
        depth += 1
    return sorted(order[:n_servers])


@dataclass(frozen=True)
class Layout:
    """Roles of the world's ranks."""
    world_size: int
    rank: int
    servers: tuple          # world ranks of the servers, sorted
    workers: tuple          # world ranks of the workers, sorted
    n_nodes: int

    @property
    def is_server(self):
        return self.rank in self.servers

    @property
    def is_worker(self):
        return not self.is_server

    @property
    def n_servers(self):
        return len(self.servers)

    @property
    def n_workers(self):
        return len(self.workers)

    @property
    def server_index(self):
        return self.servers.index(self.rank) if self.is_server else None

    @property
    def worker_index(self):
        return self.workers.index(self.rank) if self.is_worker else None

    @property
    def leader(self):
        """World rank that prints progress and writes job outputs: worker 0."""
        return self.workers[0]

    @classmethod
    def plan(cls, node_of_rank, rank, n_servers=None):
        servers = plan_layout(node_of_rank, n_servers)
        workers = [r for r in range(len(node_of_rank)) if r not in servers]
        return cls(len(node_of_rank), rank, tuple(servers), tuple(workers),
                   len(set(node_of_rank)))

    @classmethod
    def from_comm(cls, comm, n_servers=None):
        """Collective over ``comm``: find nodes, then plan; every rank raises
        the same ``LayoutError`` when the world is too small."""
        from mpi4py import MPI
        node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
        try:
            my_leader = node_comm.bcast(comm.rank, root=0)
        finally:
            node_comm.Free()
        leader_of = comm.allgather(my_leader)
        leader_ids = sorted(set(leader_of))
        node_of_rank = [leader_ids.index(l) for l in leader_of]
        return cls.plan(node_of_rank, comm.rank, n_servers)
