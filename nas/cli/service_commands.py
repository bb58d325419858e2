"""The service's commands: `serve`, the client-mode `submit` and `fetch`, and `token create|list|revoke`.

`submit` and `fetch` talk to the server named by HWNAS_URL (with HWNAS_TOKEN) when it is set, and to the
local database otherwise. Registered on the main app by `nas.cli.app`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from nas.cli.common import artifact_store
from nas.cli.common import client as _client
from nas.cli.common import emit_json as _emit_json
from nas.cli.common import storage as _storage
from nas.settings import Settings


def submit(spec: Path = typer.Argument(..., help="job spec, YAML or JSON"),
           wait: bool = typer.Option(False, "--wait", help="wait for the job to finish, with a progress bar")) -> None:
    """Queue a job: on the server when HWNAS_URL and HWNAS_TOKEN are set (the local data files the spec names
    are uploaded as datasets, skipped when the server has their bytes), else in the local database."""
    from nas.service import submit_job
    from nas.spec import load_spec

    client = _client()
    if client is None:
        job_id = submit_job(_storage(), load_spec(spec))
        typer.echo(f"queued job {job_id} in the local database; a running `hwnas serve` takes it, "
                   f"or run it now with `hwnas resume {job_id}`")
        return
    job = client.submit(spec, progress=True)  # uploads the spec's local data files first
    typer.echo(f"submitted job {job['job_id']} to {client.url}")
    if wait:
        job = client.wait(job["job_id"])
        typer.echo(f"job {job['job_id']} {job['state']}: {job['message']}")
        if job["state"] != "completed":
            raise typer.Exit(code=1)


def fetch(job_id: int = typer.Argument(...),
          best: bool = typer.Option(False, "--best", help="the best front member under the latency limit"),
          trial: int | None = typer.Option(None, "--trial", help="this trial instead of the best"),
          max_latency_ms: float | None = typer.Option(None, "--max-latency-ms",
                                                      help="latency limit for --best; default the job's target"),
          out: Path = typer.Option(..., "--out", help="a new or empty folder for the checkpoint")) -> None:
    """Fetch a checkpoint into --out (downloaded, sha256-checked and unpacked when HWNAS_URL is set)."""
    from nas.errors import SpecError
    from nas.service import export_job_trial
    from nas.views import dump_with_paths

    if best == (trial is not None):
        raise SpecError("fetch: give exactly one of --best or --trial N")
    if trial is not None and max_latency_ms is not None:
        raise SpecError("--max-latency-ms: only with --best")
    client = _client()
    if client:
        checkpoint = client.export(job_id, trial=trial, max_latency_ms=max_latency_ms)
        client.download(checkpoint, out)
    else:
        checkpoint = dump_with_paths(export_job_trial(_storage(), job_id, trial_number=trial, out_dir=out,
                                                      max_latency_ms=max_latency_ms, store=artifact_store()))
    latency = checkpoint["measured_latency_ms"]
    typer.echo(f"trial {checkpoint['trial']} of job {job_id} -> {out} (sha256 {checkpoint['sha256']}"
               + (f", {latency:.3f} ms" if latency is not None else "") + ")")


def serve(host: str | None = typer.Option(None, "--host", help="bind address (default 127.0.0.1, HWNAS_HOST)"),
          port: int | None = typer.Option(None, "--port", help="port (default 8000, HWNAS_PORT)"),
          workers: int | None = typer.Option(None, "--workers", min=1, max=64,
                                             help="API worker processes (default 1, HWNAS_API_WORKERS); the loop "
                                                  "that runs jobs stays one, in this process"),
          no_controller: bool = typer.Option(False, "--no-controller",
                                             help="serve the API only; `hwnas controller` processes run the jobs")) -> None:
    """Start the API and web page, a controller that runs queued jobs, and a local Ray (embedded defaults)."""
    import uvicorn

    from nas.api import create_app
    from nas.cli.process_guards import hold_controller_lock
    from nas.runner import JobRunner
    from nas.service import executor_factory, issue_first_admin_token, storage_for

    settings = Settings()
    settings = settings.model_copy(update={k: v for k, v in {"host": host, "port": port, "api_workers": workers}.items()
                                           if v is not None})
    storage = storage_for(settings)
    if not no_controller:
        hold_controller_lock(storage.url, role="hwnas serve")
    # Ray starts with the first job (after its profiling, if any), as in `hwnas search`.
    runner = None if no_controller else JobRunner(storage, settings, executor_factory=executor_factory(settings))
    url = f"http://{settings.host}:{settings.port}"
    first = issue_first_admin_token(storage)
    typer.echo(f"hwnas serving {url} (API {url}/api/v1, docs {url}/api/v1/docs); database {storage.url}")
    if first is not None:
        typer.echo(f"first admin token (shown once; only its hash is stored): {first}\n"
                   f"web page: {url}/#token={first}")
    else:
        typer.echo("tokens exist already; create another with `hwnas token create --scope read|submit|admin`")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"note: listening on {settings.host} without TLS; put a TLS proxy in front before exposing it",
                   err=True)
    if runner is not None:
        runner.start()
    try:
        if settings.api_workers > 1:
            # Each worker process builds the app from the environment (nas.api.app:app_from_env); the
            # database is migrated already, above.
            os.environ["HWNAS_API_WORKERS"] = str(settings.api_workers)
            uvicorn.run("nas.api.app:app_from_env", factory=True, workers=settings.api_workers, host=settings.host,
                        port=settings.port, log_level="info", access_log=True)
        else:
            uvicorn.run(create_app(settings, storage=storage), host=settings.host, port=settings.port,
                        log_level="info", access_log=True)
    finally:
        if runner is not None:
            runner.stop(timeout_s=1)


token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens (stored hashed).")


@token_app.command("create")
def token_create(scope: str = typer.Option(..., "--scope", help="read, submit (includes read) or admin (all)"),
                 name: str = typer.Option("", "--name", help="what the token is for"),
                 expires_in: str | None = typer.Option(None, "--expires-in",
                                                       help="lifetime: 90s, 15m, 12h, 30d (default: no expiry)"),
                 ) -> None:
    """Create a token and print it once (only its sha256 is stored)."""
    from nas.auth import parse_duration_s
    from nas.service import issue_token

    expires_in_s = parse_duration_s(expires_in) if expires_in is not None else None
    token_id, token = issue_token(_storage(), name=name or f"{scope} token", scope=scope, expires_in_s=expires_in_s)
    typer.echo(token)
    typer.echo(f"token {token_id} ({scope}); it is shown only now: use it as `Authorization: Bearer <token>` "
               "or HWNAS_TOKEN", err=True)


@token_app.command("list")
def token_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (their ids, names, scopes and first characters; never the tokens)."""
    from rich.console import Console
    from rich.table import Table

    from nas.service import token_view

    rows = [token_view(t).model_dump(mode="json") for t in _storage().list_tokens()]
    if as_json:
        _emit_json(rows)
        return
    columns = ("id", "name", "scope", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    table = Table(title="API tokens")
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*(str(r[c] or "") for c in columns))
    Console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(...)) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    _storage().revoke_token(token_id)
    typer.echo(f"token {token_id} revoked")
