"""A Ray worker node for hwnas: joins a cluster, advertising the device profile it has as a custom resource.

What `hwnas worker` runs. Device tasks (profiling, measuring) ask for one unit of the device's resource,
so Ray places them on a node that has it; candidate training asks only for CPUs and goes anywhere.

The node is started the way `ray start --address HEAD --block` starts one, through `ray._private.node.Node`
(the same call `ray start` and Ray's own `ray.cluster_utils.Cluster` make): `ray start` refuses to join a
head bound to loopback when `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the setting that keeps a one-machine
cluster (tests, a laptop) off the network. A head on another machine is joined with Ray's usual address
detection. The process blocks until it is stopped; when one of the node's own processes dies, the rest are
killed and it exits non-zero, like `ray start --block`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from search_spaces.errors import ExecutionError, SpecError

logger = logging.getLogger(__name__)


def head_host(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SpecError(f"--address: expected HOST:PORT of the Ray head (the GCS port, 6379 by default), got "
                        f"{address!r}; for example 127.0.0.1:6379")
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_worker_node(*, address: str, resources: dict[str, float], num_cpus: int | None = None,
                    num_gpus: int | None = None, object_store_memory_bytes: int | None = None,
                    node_ip_address: str | None = None, stop: threading.Event | None = None,
                    on_ready: Callable[[str], None] | None = None) -> int:
    """Join the cluster at `address` and block until `stop` is set or a signal ends the process.

    Returns the exit code: 0 when stopped, 1 when one of the node's processes died.
    """
    loopback = is_loopback(head_host(address))
    # Read by Ray at import: loopback heads keep every node on 127.0.0.1; others use Ray's detection.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0" if loopback else "1")
    import ray._private.node
    import ray._private.services as services
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    from ray._private.parameter import RayParams

    gcs_address = services.canonicalize_bootstrap_address(address)
    node_ip = node_ip_address or ("127.0.0.1" if loopback else services.get_node_ip_address(gcs_address))
    params: dict[str, Any] = {"gcs_address": gcs_address, "node_ip_address": node_ip, "resources": dict(resources)}
    if num_cpus is not None:
        params["num_cpus"] = num_cpus
    if num_gpus is not None:
        params["num_gpus"] = num_gpus
    if object_store_memory_bytes is not None:
        params["object_store_memory"] = object_store_memory_bytes
    try:
        ensure_token_if_auth_enabled(None, create_token_if_missing=False)  # as `ray start` does
        node = ray._private.node.Node(RayParams(**params), head=False, shutdown_at_exit=True, spawn_reaper=True,
                                      connect_only=False)
    except Exception as exc:  # noqa: BLE001  (Ray raises many types; the user needs one message)
        raise ExecutionError(f"cannot join the Ray cluster at {address!r} from {socket.gethostname()}: {exc}; "
                             "check that the head runs (`ray start --head`) and the address is reachable") from exc
    if on_ready is not None:
        on_ready(node.node_id)
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        dead = node.dead_processes()
        if dead:
            logger.error("Ray processes of this node died (%s); stopping the node",
                         ", ".join(kind for kind, _ in dead))
            node.kill_all_processes(check_alive=False, allow_graceful=False)
            return 1
    node.kill_all_processes(check_alive=False, allow_graceful=True)
    return 0
