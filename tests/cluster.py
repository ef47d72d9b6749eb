"""A real 2-node Ray cluster on one machine, nodes without a shared work_dir.

The head runs as usual; the worker node runs inside its own mount namespace
(`unshare -m --propagation private`) with a tmpfs mounted over the job's work_dir, so a
file one node writes there is not on the other node's disk, as on a real cluster.
Processes of both namespaces still reach each other over 127.0.0.1. Everything started
here is stopped by its process group and temp dir, never by name (`ray stop` would end
every Ray process on the machine).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import shutil
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
# The head declares a node dead after 3 failed health checks 1 s apart (Ray's default: 5, 3 s
# apart: the node-kill test waited ~15 s for it). A check still fails only when the raylet does
# not answer within Ray's 10 s timeout, so a slow node on a loaded machine is not declared dead.
HEALTH = json.dumps({"health_check_period_ms": 1000, "health_check_failure_threshold": 3})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwoNodeCluster:
    """`with TwoNodeCluster(tmp, private_dir=WORK) as c:` -> c.address; c.kill_worker_node()."""

    def __init__(self, tmp: Path, private_dir: Path, head_cpus: int = 1, worker_cpus: int = 1) -> None:
        self.tmp = tmp
        self.private_dir = private_dir
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's socket paths must stay under 107 bytes: short temp dirs of our own
        self.ray_root = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        self.head_dir = self.ray_root / "h"
        self.worker_dir = self.ray_root / "w"
        self.procs: list[subprocess.Popen] = []

    def _common(self, temp_dir: Path) -> list[str]:
        return ["--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}"]

    def start(self) -> "TwoNodeCluster":
        self.private_dir.mkdir(parents=True, exist_ok=True)
        head = [RAY, "start", "--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                "--object-store-memory=200000000", "--include-dashboard=false", f"--system-config={HEALTH}",
                *self._common(self.head_dir)]
        self.procs.append(subprocess.Popen(head, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                                           stderr=open(self.tmp / "head.log", "w")))
        self._wait_port()
        worker = [RAY, "start", f"--address={self.address}", f"--num-cpus={self.worker_cpus}",
                  "--object-store-memory=200000000", *self._common(self.worker_dir)]
        # only the worker node's mount namespace sees the tmpfs over private_dir
        script = f"mount -t tmpfs tmpfs {shlex.quote(str(self.private_dir))} && exec {shlex.join(worker)}"
        self.procs.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                           env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                                           stderr=open(self.tmp / "worker.log", "w")))
        self._wait_nodes(2)
        return self

    def _wait_port(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and self.procs[0].poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"head did not open {self.address}: {(self.tmp / 'head.log').read_text()[-2000:]}")

    def alive_nodes(self) -> int:
        code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def _wait_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"only {self.alive_nodes()} of {n} nodes joined: "
                           f"{(self.tmp / 'worker.log').read_text()[-2000:]}")

    def _pids_with(self, marker: str, name: str | None = None) -> list[int]:
        """Processes whose command line names `marker` (a temp dir of ours), optionally a program name."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and (name is None or name in cmd.split(" ")[0]):
                pids.append(int(entry.name))
        return pids

    def kill_worker_node(self) -> int:
        """SIGKILL the worker node's raylet (what a lost machine looks like to the head)."""
        pids = self._pids_with(str(self.worker_dir), "raylet")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        """SIGKILL our process groups (SIGTERM makes a node drain for 30 s), then anything of ours left."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        for marker in (str(self.head_dir), str(self.worker_dir)):  # helpers that left the groups
            for pid in self._pids_with(marker):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.ray_root, ignore_errors=True)

    def __enter__(self) -> "TwoNodeCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
