"""A standalone ZooKeeper from Debian's jars, for leader election; it can stop and start again."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.services.process import (
    HOST,
    ServiceProcess,
    ServiceUnavailable,
    clean_env,
    find_binary,
    spawn_ready,
    start_with_port_retry,
)

_ZK_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's; its manifest carries the classpath
_SLF4J_SIMPLE = Path("/usr/share/java/slf4j-simple.jar")


@dataclass
class ZooKeeper:
    """A standalone ZooKeeper server; ``hosts`` is the kazoo connection string."""

    hosts: str
    workdir: Path
    process: ServiceProcess = field(repr=False)

    def stop(self) -> None:
        self.process.stop()


def zk_four_letter(hosts: str, command: str, timeout: float = 1.0) -> str | None:
    """Send a ZooKeeper four-letter command; None if the server does not answer yet."""
    host, port = hosts.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


def start_zookeeper(workdir: Path, *, timeout: float = 20.0) -> ZooKeeper:
    """Run ``QuorumPeerMain`` in the foreground from Debian's jars (what zkServer.sh does,
    minus its hard-coded /etc and /var/log paths); ready when ``ruok`` answers ``imok``."""
    java = find_binary("java", "a JRE (the zookeeper package depends on one)")
    if not _ZK_JAR.is_file():
        raise ServiceUnavailable(f"{_ZK_JAR} missing (install the zookeeper package)")
    classpath = [str(_ZK_JAR)]
    if _SLF4J_SIMPLE.is_file():  # otherwise slf4j falls back to no logging at all
        classpath.append(str(_SLF4J_SIMPLE))
    workdir.mkdir(parents=True, exist_ok=True)

    def start(port: int) -> ServiceProcess:
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        cfg = workdir / "zoo.cfg"
        cfg.write_text(
            "\n".join(
                [
                    "tickTime=1000",  # sessions from 2 ticks: the controller's 2 s floor
                    f"dataDir={data}",
                    f"clientPort={port}",
                    f"clientPortAddress={HOST}",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr",
                    "",
                ]
            )
        )
        argv = [
            java,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            os.pathsep.join(classpath),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        return spawn_ready(
            "zookeeper", port, argv, workdir / "zookeeper.log", clean_env(workdir),
            ready=lambda: zk_four_letter(f"{HOST}:{port}", "ruok") == "imok",
            timeout=timeout, what="ruok -> imok",
        )

    proc = start_with_port_retry(start)
    return ZooKeeper(hosts=f"{HOST}:{proc.port}", workdir=workdir, process=proc)


def restart_zookeeper(zk: ZooKeeper, *, timeout: float = 20.0) -> float:
    """Start a stopped ``zk`` again on its port, config and data (the end of an outage);
    returns the seconds until it answered ``ruok``."""
    old = zk.process
    old.stop()
    started = time.monotonic()
    zk.process = spawn_ready(
        old.name, old.port, [str(arg) for arg in old.popen.args], old.log_path,
        clean_env(zk.workdir), ready=lambda: zk_four_letter(zk.hosts, "ruok") == "imok",
        timeout=timeout, what="ruok -> imok after a restart",
    )
    return time.monotonic() - started
