"""A real Redis Cluster of redis-server processes on loopback ports.

``LocalCluster(primaries=3, replicas_per_primary=1)`` starts the nodes with
``cluster-enabled yes``, joins them with ``redis-cli --cluster create``, and
waits until every node reports ``cluster_state:ok``. Nodes can be stopped
(politely or with SIGKILL) and started again on the same port and
``nodes.conf``, so tests can restart a node or force a failover.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port > 55_000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    def __init__(
        self,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        node_timeout_ms: int = 5000,
    ) -> None:
        self.binary = shutil.which("redis-server") or "redis-server"
        self.cli = shutil.which("redis-cli") or "redis-cli"
        self.directory = tempfile.mkdtemp(prefix="luathrottle-cluster-")
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        count = primaries * (1 + replicas_per_primary)
        self.ports = [free_cluster_port() for _ in range(count)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        node_dir = os.path.join(self.directory, str(port))
        os.makedirs(node_dir, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.binary,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--save", "", "--appendonly", "no", "--dir", node_dir),
                # Replicas sync at once instead of after the default 5 s, and
                # CLUSTER SLOTS lists a replica only once its offset moved,
                # which the primary's pings do every period.
                *("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: self.client(port).ping(), f"node {port} to answer")

    def stop_node(self, port: int, *, kill: bool = False) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=30)

    def client(self, port: int) -> "redis.Redis[bytes]":
        return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> "LocalCluster":
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(self.replicas_per_primary),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            for port in self.processes:
                with self.client(port) as client:
                    info = client.cluster("INFO")
                    if info["cluster_state"] != "ok":
                        return False
                    if int(info["cluster_known_nodes"]) < len(self.processes):
                        return False
                    replication = client.info("replication")
                    if replication.get("master_link_status", "up") != "up":
                        return False
                    if any(
                        len(slots) < 3 + self.expected_replicas()
                        for slots in client.cluster("SLOTS")
                    ):
                        return False
            return True

        self._wait(healthy, "cluster_state:ok on every node")

    def expected_replicas(self) -> int:
        """Replicas each slot range lists when no node is down."""
        return (
            self.replicas_per_primary if len(self.processes) == len(self.ports) else 0
        )

    def primary_ports(self) -> list[int]:
        """Ports of the live nodes that are primaries now."""
        ports = []
        for port in sorted(self.processes):
            with self.client(port) as client:
                if client.info("replication")["role"] == "master":
                    ports.append(port)
        return ports

    def replica_of(self, primary_port: int) -> int:
        with self.client(primary_port) as client:
            replicas = client.info("replication")
        return int(replicas["slave0"]["port"])

    def stop(self) -> None:
        for port in list(self.processes):
            self.stop_node(port, kill=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _wait(condition, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)
