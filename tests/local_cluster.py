"""A multi-node Ray cluster on loopback for tests and benchmarks: a head and `hwnas worker` nodes.

The head is `ray start --head --block` bound to 127.0.0.1 with no CPUs of its own (like a real cluster's
head, it only coordinates); worker nodes are `hwnas worker` processes, each in its own process group so
that a test can kill one whole node (raylet, object store and its Ray workers) at once. Controllers are
`hwnas controller` processes. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           # Token authentication, with the cluster's own token (a fresh machine has no ~/.ray/auth_token).
           "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    return {**env, **extra}


@dataclass
class Process:
    """A process in its own session, its output collected line by line."""

    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = regex.search(line)
                if match:
                    return match
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the collector catch the last lines
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before {pattern!r}:\n"
                                   f"{self.output[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {pattern!r} within {timeout_s} s:\n{self.output[-4000:]}")

    def _children_elsewhere(self) -> list[tuple[int, str]]:
        """Processes in other process groups whose parent is in this one, with their titles: a node's Ray
        workers (children of its raylet, each in a process group of its own)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if os.getpgid(parent) == self.popen.pid and os.getpgid(int(entry.name)) != self.popen.pid:
                    title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                    found.append((int(entry.name), title))
            except (OSError, ProcessLookupError, ValueError, IndexError):
                continue
        return found

    def runs_task(self, function: str) -> bool:
        """Whether a Ray worker of this node executes a task of `function` now (Ray titles a worker process
        `ray::<function>` while it runs such a task, `ray::IDLE` otherwise)."""
        return any(title.startswith(f"ray::{function}") for _, title in self._children_elsewhere())

    def kill(self) -> None:
        """SIGKILL the whole process group and the node's Ray workers, as if its machine died at once (a
        worker left alive would still hand its running task's result to the controller)."""
        if self.popen.poll() is None:
            for pid, _ in self._children_elsewhere():  # the workers first: they could still report a result
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=30)

    def stop(self, *, timeout_s: float = 10) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()


def spawn(name: str, args: list[str], env: dict[str, str]) -> Process:
    popen = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, cwd=str(REPO))
    return Process(name, popen)


class LocalCluster:
    """Start with `start()`; add nodes with `add_worker`; `shutdown()` kills everything it started."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.head: Process | None = None
        self.workers: list[Process] = []
        self.controllers: list[Process] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this cluster's processes (its token included)."""
        return base_env(RAY_AUTH_TOKEN=self.token, **extra)

    def start(self) -> LocalCluster:
        args = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                "--port", str(self.port), "--num-cpus", "0", "--include-dashboard", "false",
                "--disable-usage-stats", "--ray-client-server-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--object-store-memory", str(100 * 1024 * 1024)]
        self.head = spawn("ray head", args, self.env())
        self.head.wait_for(r"Ray runtime started", timeout_s=90)
        return self

    def add_worker(self, *, cpus: int = 1, device: str | None = None, env: dict[str, str] | None = None) -> Process:
        """Start an `hwnas worker` node and wait until it has joined; its node id is in `.node_id`."""
        args = [str(BIN / "hwnas"), "worker", "--address", self.address, "--num-cpus", str(cpus),
                "--object-store-mb", "100"]
        if device:
            args += ["--device", device]
        worker = spawn(f"worker {len(self.workers)}", args, self.env(**(env or {})))
        match = worker.wait_for(r"node (\w+) joined", timeout_s=90)
        worker.node_id = match.group(1)  # type: ignore[attr-defined]
        self.workers.append(worker)
        return worker

    def start_controller(self, env: dict[str, str], *args: str) -> Process:
        controller = spawn(f"controller {len(self.controllers)}",
                           [str(BIN / "hwnas"), "controller", *args],
                           self.env(HWNAS_RAY_ADDRESS=self.address, **env))
        self.controllers.append(controller)
        return controller

    def shutdown(self) -> None:
        for process in [*self.controllers, *self.workers]:
            process.stop()
        if self.head is not None:
            self.head.stop()
