#!/bin/sh
# Install the SLURM daemons and client tools that tests/slurm needs.
#
#   tools/install-slurm.sh            # as root (CI), Debian/Ubuntu only
#
# Idempotent: if slurmctld, slurmd, sbatch, srun, sinfo, scontrol and sacct
# are already on PATH it says so and does nothing.  Otherwise it runs
# `apt-get update` and installs Debian's slurmctld, slurmd and slurm-client
# (plus the plugins they depend on; munge comes in as a dependency but the
# test cluster does not use it: it runs with auth/none).  No service is
# started: tests/slurm_cluster.py starts its own private daemons on loopback.
#
# Any failure stops the script with a non-zero exit code and a message.
set -eu

say() { echo "install-slurm: $*"; }
die() { echo "install-slurm: ERROR: $*" >&2; exit 1; }

need="slurmctld slurmd sbatch srun sinfo squeue scontrol scancel sacct"
missing=""
for b in $need; do
    command -v "$b" >/dev/null 2>&1 || missing="$missing $b"
done
if [ -z "$missing" ]; then
    say "already installed: $(slurmctld -V 2>/dev/null || echo '?') ($(command -v slurmctld))"
    exit 0
fi
say "missing:$missing"

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install slurmctld, slurmd and the SLURM client tools by hand"

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q || die "apt-get update failed"

pkgs="slurmctld slurmd slurm-client"
say "apt-get install -y --no-install-recommends $pkgs"
# The packages' maintainer scripts may try to start services.  Keep them from
# doing so with a temporary policy-rc.d (exit 101 = "action forbidden"),
# unless the machine already has one (Docker images usually do).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
    trap 'rm -f "$policy"' EXIT INT TERM
fi
rc=0
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    $pkgs || rc=$?
if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT INT TERM; fi
[ "$rc" = 0 ] || die "apt-get install $pkgs failed (exit $rc)"

for b in $need; do
    command -v "$b" >/dev/null 2>&1 || die "'$b' still not on PATH after installing $pkgs"
done
say "installed: $(slurmctld -V) (packages: $(dpkg-query -W -f='${Package}=${Version} ' $pkgs))"
