"""The ``slurm.conf`` of a private test cluster (see `~.slurm_cluster.SlurmCluster`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["render_slurm_conf"]

_CONF_TEMPLATE = """\
ClusterName=gen3wf
# An address, so nothing depends on how the host name resolves.
SlurmctldHost={ctld_host}({ctld_address})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# A private munged: a system one is never used or disturbed.
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool{per_node_dir}
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd{per_node_file}.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd{per_node_file}.log
PlugStackConfig={dir}/plugstack.conf
# No cgroups: containers and sandboxes often do not delegate them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job with no --mem gets all the node's memory, so nothing runs beside it.
DefMemPerCPU={mem_per_cpu}
ReturnToService=2
# A batch job on a lost node fails (NODE_FAIL) rather than going back to the queue.
JobRequeue=0
# Reject at sbatch time, rather than leave pending forever, jobs larger than the node.
EnforcePartLimits=ALL
# Short waits so that cancelling and shutting down are quick.
KillWait=2
# Shorter than parsl's 60 s status poll: without accounting (no sacct) a
# block that ended is gone from squeue before parsl asks, which the plug-in
# must cope with (providers.squeue_tolerating_ended_jobs).
MinJobAge=30
# How long a node may not answer before it is DOWN (pings come every third of it).
SlurmdTimeout={slurmd_timeout}
SlurmctldTimeout=30
InactiveLimit=0
Waittime=0
{node_lines}
PartitionName={partition} Nodes={node_list} Default=YES MaxTime=INFINITE State=UP
"""


def render_slurm_conf(
    directory: Path,
    *,
    ctld_host: str,
    ctld_address: str,
    ports: Sequence[int],
    nodes: dict[str, str],
    cpus: int,
    memory_mb: int,
    partition: str,
    slurmd_timeout: int = 30,
) -> str:
    """Return the text of ``slurm.conf``.

    Parameters
    ----------
    directory : `~pathlib.Path`
        The cluster's directory (no blanks): state, spool, pids and logs go there.
    ctld_host, ctld_address : `str`
        This machine's short host name, and the address slurmctld is reached at.
    ports : `~collections.abc.Sequence` [`int`]
        slurmctld's and slurmd's ports.
    nodes : `dict` [`str`, `str`]
        Address of each node, by name. With more than one, each slurmd has its
        own spool directory, pid file and log (``%n``: its node name).
    cpus, memory_mb : `int`
        What each node declares (``CPUs``, ``RealMemory``).
    partition : `str`
        The single, default partition, with every node.
    slurmd_timeout : `int`, optional
        ``SlurmdTimeout`` in seconds.
    """
    several = len(nodes) > 1
    node_lines = "\n".join(
        f"NodeName={name} NodeAddr={address} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN"
        for name, address in nodes.items()
    )
    return _CONF_TEMPLATE.format(
        dir=directory, ctld_host=ctld_host, ctld_address=ctld_address, ctld_port=ports[0],
        slurmd_port=ports[1], per_node_dir="/%n" if several else "", per_node_file=".%n" if several else "",
        mem_per_cpu=memory_mb // cpus, slurmd_timeout=slurmd_timeout, node_lines=node_lines,
        partition=partition, node_list=",".join(nodes),
    )  # fmt: skip
