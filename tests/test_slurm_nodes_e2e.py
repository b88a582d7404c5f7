"""The multi-node private Slurm cluster: nodes with their own host names,
addresses and abstract sockets; jobs across nodes; a lost node; and nothing
left once it is stopped, whether it started or not."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from harness import wait_for

from desc.gen3_workflow.testing import slurm_cluster as slurm_cluster_module
from desc.gen3_workflow.testing.node_network import NodeNetwork, node_network_unavailable_reason
from desc.gen3_workflow.testing.slurm_cluster import SlurmCluster, SlurmClusterError, slurm_unavailable_reason

NODES = ["n1", "n2", "n3", "n4"]  # the session's cluster (`slurm_nodes`)
# A node reaches the host's server and tells it its host name.
_CONNECT = (
    "import socket, sys\n"
    "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:\n"
    "    s.sendall(socket.gethostname().encode())\n"
)
# Bind an abstract socket, say so, and hold it until stdin closes.
_BIND_ABSTRACT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.bind('\\0' + sys.argv[1])\n"
    "print('bound', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A directory outside pytest's (user munge cannot enter /tmp/pytest-of-root)."""
    reason = slurm_unavailable_reason() or node_network_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private multi-node Slurm cluster: {reason}")
    path = Path(tempfile.mkdtemp(prefix="slurm-nodes-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _network_leftovers(tag: str) -> list[str]:
    """Host interfaces and network namespaces whose name holds ``tag``."""
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, check=True).stdout)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    names = [link["ifname"] for link in links] + [line.split()[0] for line in netns.splitlines()]
    return [name for name in names if tag in name]


def _daemons_of(directory: Path) -> dict[int, str]:
    """Processes (munged, slurmctld, slurmd, slurmstepd...) with ``directory`` on their command line."""
    found = {}
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found[process.pid] = cmdline
    return found


def _expand(cluster: SlurmCluster, nodelist: str) -> list[str]:
    return cluster.run(["scontrol", "show", "hostnames", nodelist]).stdout.split()


def test_nodes_are_up(slurm_nodes: SlurmCluster) -> None:
    """Idle nodes, each at its own address of the host's bridge subnet."""
    print(f"SlurmCluster(nodes={len(NODES)}).start() took {slurm_nodes.start_seconds:.2f} s")
    assert slurm_nodes.node_names == NODES
    states = slurm_nodes.run(["sinfo", "--noheader", "--Node", "--format=%N %P %T %c"]).stdout.split("\n")
    assert sorted(filter(None, states)) == [f"{name} debug* idle {slurm_nodes.cpus}" for name in NODES]
    addresses = [slurm_nodes.node_address(name) for name in NODES]
    assert slurm_nodes.host_address is not None
    assert len({slurm_nodes.host_address, *addresses}) == len(NODES) + 1
    subnet = slurm_nodes.host_address.rsplit(".", 1)[0]
    assert all(address.startswith(f"{subnet}.") for address in addresses)


def test_srun_runs_one_task_on_each_node_with_its_own_address(slurm_nodes: SlurmCluster) -> None:
    """``srun -N 4``: one task per node at once, each with its node's host name and address."""
    script = 'echo "$(hostname) $(hostname -I)"'
    out = slurm_nodes.run(["srun", "-N", str(len(NODES)), "--ntasks-per-node=1", "sh", "-c", script]).stdout
    seen = dict(line.split() for line in out.splitlines())
    assert seen == {name: slurm_nodes.node_address(name) for name in NODES}


def test_node_reaches_a_server_on_the_host(slurm_nodes: SlurmCluster) -> None:
    """A task on n2 connects to a TCP server listening on the host at `host_address`."""
    assert slurm_nodes.host_address is not None
    received: dict[str, object] = {}
    with socket.create_server((slurm_nodes.host_address, 0)) as server:
        server.settimeout(30)
        port = server.getsockname()[1]

        def serve() -> None:
            conn, peer = server.accept()
            with conn:
                conn.settimeout(10)
                received.update(peer=peer[0], text=conn.recv(100).decode())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = ["python3", "-c", _CONNECT, slurm_nodes.host_address, str(port)]
        slurm_nodes.run(["srun", "-N1", "-w", "n2", *client])
        thread.join(30)
    assert received == {"peer": slurm_nodes.node_address("n2"), "text": "n2"}


def test_abstract_sockets_are_per_node(slurm_nodes: SlurmCluster) -> None:
    """An abstract socket bound on n1 shows in n1's /proc/net/unix only."""
    name = f"g3wf-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, **slurm_nodes.env}
    srun = ["srun", "-N1", "-w", "n1", "python3", "-c", _BIND_ABSTRACT, name]
    binder = subprocess.Popen(srun, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert binder.stdout is not None and binder.stdin is not None
        ready, _, _ = select.select([binder.stdout], [], [], 30)
        assert ready and binder.stdout.readline().strip() == "bound"
        on_node = {node: slurm_nodes.run_on_node(node, ["cat", "/proc/net/unix"]).stdout for node in NODES}
        assert f"@{name}" in on_node["n1"]
        assert f"@{name}" not in on_node["n2"] and f"@{name}" not in on_node["n3"]
        assert f"@{name}" not in Path("/proc/net/unix").read_text()
        binder.stdin.close()
        assert binder.wait(timeout=30) == 0
    finally:
        if binder.poll() is None:
            binder.kill()
            binder.wait()


def test_batch_job_spans_two_nodes(slurm_nodes: SlurmCluster, tmp_path: Path) -> None:
    """``sbatch -N 2``: the job gets two nodes, and its ``srun`` runs on both."""
    output = tmp_path / "job.out"
    script = 'echo "$SLURM_JOB_NODELIST"; srun hostname | sort'
    args = ["sbatch", "--parsable", "-N", "2", f"--output={output}", "--wrap", script]
    job_id = slurm_nodes.run(args).stdout.strip()
    wait_for(lambda: job_id not in slurm_nodes.job_ids(), f"job {job_id} to end", 60, 0.2)
    nodelist, *hostnames = output.read_text().split()
    assert len(set(hostnames)) == 2 and set(hostnames) <= set(NODES)
    assert _expand(slurm_nodes, nodelist) == hostnames


def test_lost_node_and_stop_leave_nothing(scratch_dir: Path) -> None:
    """`kill_node` kills what runs on n3 alone; Slurm marks n3 down and fails its
    job; `stop` afterwards removes daemons, namespaces, veths and bridge."""
    cluster = SlurmCluster(scratch_dir, nodes=3, slurmd_timeout=10).start()
    try:
        assert cluster.network is not None
        network = cluster.network
        sleep = [
            "sbatch",
            "--parsable",
            "-w",
            "n3",
            f"--output={scratch_dir}/sleep.out",
            "--wrap",
            "sleep 300",
        ]
        job_id = cluster.run(sleep).stdout.strip()
        wait_for(lambda: len(network.processes("n3")) > 1, "the job's processes on n3", 30, 0.1)
        others = {name: network.processes(name) for name in ("n1", "n2")}
        lost_at = time.monotonic()
        cluster.kill_node("n3")
        assert network.processes("n3") == set()
        assert "slurmd@n3" not in cluster.pids
        assert {name: network.processes(name) for name in ("n1", "n2")} == others
        out = cluster.run(["srun", "-N", "2", "-w", "n1,n2", "hostname"]).stdout.split()
        assert sorted(out) == ["n1", "n2"]

        def node_down_and_job_failed() -> bool:
            state = cluster.run(["sinfo", "--noheader", "--Node", "--nodes=n3", "--format=%T"]).stdout
            job = cluster.run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%T"])
            return state.strip() == "down*" and job.stdout.strip() == "NODE_FAIL"

        wait_for(node_down_and_job_failed, "n3 down* and its job NODE_FAIL", 60, 0.5)
        down_after = time.monotonic() - lost_at
        print(f"n3 down and its job failed {down_after:.1f} s after kill_node (SlurmdTimeout=10)")
    finally:
        cluster.stop()
    assert _network_leftovers(network.tag) == []
    assert _daemons_of(scratch_dir) == {}
    assert not (scratch_dir / SlurmCluster.RECORD).exists()


def test_failed_start_leaves_nothing(scratch_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that fails once network and daemons are up removes them all: here
    the nodes declare more memory than the machine has, so Slurm never lets them be idle."""
    made: list[NodeNetwork] = []
    create = NodeNetwork.create

    def create_and_note(node_names: list[str]) -> NodeNetwork:
        made.append(create(node_names))
        return made[-1]

    monkeypatch.setattr(slurm_cluster_module.NodeNetwork, "create", create_and_note)
    with pytest.raises(SlurmClusterError, match="timed out") as failure:
        SlurmCluster(scratch_dir, nodes=3, mem_headroom_mb=-(10**8), start_timeout=3.0).start()
    assert "Low RealMemory" in str(failure.value)  # the daemon logs tell why
    (network,) = made
    assert _network_leftovers(network.tag) == []
    assert _daemons_of(scratch_dir) == {}


def test_command_line_start_and_stop(scratch_dir: Path) -> None:
    """``start --nodes 3`` prints the exports and the nodes; ``stop`` removes it all."""
    command = [sys.executable, "-m", "desc.gen3_workflow.testing.slurm_cluster"]
    directory = scratch_dir
    started = subprocess.run(
        [*command, "start", "--dir", str(directory), "--nodes", "3"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    try:
        assert started.returncode == 0, started.stderr
        assert f"export SLURM_CONF={directory / 'slurm.conf'}" in started.stdout.splitlines()
        for name in ("n1", "n2", "n3"):
            assert f"node {name} at " in started.stderr
        assert "node n4 at " not in started.stderr
        env = {**os.environ, "SLURM_CONF": str(directory / "slurm.conf")}
        sinfo = subprocess.run(
            ["sinfo", "--noheader", "--format=%D %T"], env=env, capture_output=True, text=True
        )
        assert sinfo.stdout.split() == ["3", "idle"]
        tag = json.loads((directory / SlurmCluster.RECORD).read_text())["network"]["tag"]
    finally:
        stopped = subprocess.run([*command, "stop", "--dir", str(directory)], capture_output=True, timeout=90)
    assert stopped.returncode == 0, stopped.stderr
    assert _network_leftovers(tag) == []
    assert _daemons_of(directory) == {}


def test_run_on_node_passes_arguments_verbatim(slurm_nodes: SlurmCluster) -> None:
    """`SlurmCluster.run_on_node` runs on the node, with no shell parsing its arguments."""
    text = "a  b; $(hostname) 'c'"
    assert slurm_nodes.run_on_node("n2", ["echo", text]).stdout == f"{text}\n"
    assert slurm_nodes.run_on_node("n2", ["hostname"]).stdout == "n2\n"
