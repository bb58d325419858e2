"""`hwnas worker` and `hwnas controller`: the processes of a multi-node set-up on one PostgreSQL database."""

from __future__ import annotations

import logging

import typer

from nas.settings import Settings

logger = logging.getLogger(__name__)


def worker(address: str = typer.Option(..., "--address", help="the Ray head, HOST:PORT (started with `ray start --head`)"),
           device: list[str] = typer.Option([], "--device", help="device profile this machine has (repeatable); "
                                                                   "profiling and measuring for it run here"),
           num_cpus: int | None = typer.Option(None, "--num-cpus", min=0, help="CPUs offered for training (default: all)"),
           num_gpus: int | None = typer.Option(None, "--num-gpus", min=0),
           object_store_mb: int | None = typer.Option(None, "--object-store-mb", min=75, help="Ray object store size"),
           node_ip_address: str | None = typer.Option(None, "--node-ip-address",
                                                      help="address other nodes reach this one at (default: detected)")) -> None:
    """Join a Ray cluster as a worker node; blocks until stopped (Ctrl-C, SIGTERM)."""
    from latency_models.device import DeviceProfile
    from nas.errors import SpecError
    from workers.node import run_worker_node

    resources: dict[str, float] = {}
    settings = Settings()
    for name in device:
        if settings.database_url:  # the profile must exist, and must be something this machine can be
            from nas.service import storage_for

            profile = storage_for(settings).device(name)
            if not profile.describes_this_machine():
                raise SpecError(f"--device {name}: this machine cannot measure as {name!r} ({profile.backend}, "
                                f"{profile.threads} threads); pick a profile of this machine (`hwnas devices list`)")
        else:
            profile = DeviceProfile(name=name)  # checks the name; the database is not known here
            logger.warning("HWNAS_DATABASE_URL is not set: device profile %r is advertised unchecked", name)
        resources[profile.ray_resource] = 1.0

    def ready(node_id: str) -> None:
        typer.echo(f"hwnas worker: node {node_id} joined {address}"
                   + (f" with device {', '.join(device)}" if device else "") + "; Ctrl-C to leave", err=True)

    code = run_worker_node(address=address, resources=resources, num_cpus=num_cpus, num_gpus=num_gpus,
                           object_store_memory_bytes=object_store_mb * 1024 * 1024 if object_store_mb else None,
                           node_ip_address=node_ip_address, on_ready=ready)
    raise typer.Exit(code=code)


def controller(max_jobs: int | None = typer.Option(None, "--max-jobs", min=1,
                                                   help="jobs run at once (default HWNAS_CONTROLLER_MAX_JOBS)"),
               exit_when_idle: bool = typer.Option(False, "--exit-when-idle",
                                                   help="exit once no job is queued or running")) -> None:
    """Run queued jobs under leases, beside other controllers, on PostgreSQL and a Ray cluster (HWNAS_RAY_ADDRESS)."""
    from nas.cli.process_guards import refuse_sqlite
    from nas.runner import JobRunner
    from nas.service import executor_factory, storage_for

    settings = Settings()
    refuse_sqlite(settings.resolved_database_url, command="hwnas controller")
    logging.getLogger("nas").setLevel(logging.INFO)  # a daemon: say which jobs it takes and how they end
    storage = storage_for(settings)
    runner = JobRunner(storage, settings, executor_factory=executor_factory(settings), max_jobs=max_jobs,
                       exit_when_idle=exit_when_idle)
    typer.echo(f"hwnas controller {runner.controller.owner}: database {storage.engine.url!r}, Ray "
               f"{settings.ray_address or 'local'}, up to {runner.max_jobs} jobs at once", err=True)
    runner.start()
    try:
        while not runner.wait(timeout_s=1.0):
            pass
    except KeyboardInterrupt:
        runner.stop()
        typer.echo("controller stopped; its running jobs are taken over by another controller when their "
                   "leases expire", err=True)
        raise typer.Exit(code=130) from None
