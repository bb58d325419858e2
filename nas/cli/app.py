"""The `hwnas` command line. Errors exit non-zero with a one-line reason (codes in `nas.errors`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from nas.cli.common import artifact_store
from nas.cli.common import client as _client
from nas.cli.common import emit_json as _emit_json
from nas.cli.common import storage as _storage
from nas.errors import HwnasError, JobCancelledError, JobFailedError, cli_message, exit_code_for
from nas.settings import Settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Hardware-aware neural architecture search.")


def _front_table(rows: list[dict[str, Any]], *, target_ms: float, metric_name: str) -> Any:
    from rich.table import Table

    table = Table(title=f"Pareto front ({metric_name} against latency; target {target_ms} ms)")
    for column in ("trial", metric_name, "predicted ms", "measured ms", "params", "under target", "arch"):
        table.add_column(column)
    one_shot = any(r.get("trained_steps") == 0 for r in rows)
    if one_shot:  # one-shot: say which figures come from inherited weights and which from final training
        table.add_column("weights")

    def ms(value: float | None, std: float | None = None) -> str:
        if value is None:
            return "-"
        return f"{value:.3f} ± {std:.3f}" if std is not None else f"{value:.3f}"

    for r in rows:
        cells = [str(r["trial"]), f"{r['metric']:.4f}", ms(r["predicted_latency_ms"], r["predicted_latency_std_ms"]),
                 ms(r["measured_latency_ms"]), str(r["params"]), "yes" if r["latency_ms"] <= target_ms else "no",
                 r["arch_text"]]
        if one_shot:
            cells.append("inherited" if not r.get("trained_steps") else f"trained {r['trained_steps']} steps")
        table.add_row(*cells)
    return table


def _baseline_brief(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    if not baseline:
        return None
    return {k: baseline.get(k) for k in ("metric_name", "metric", "latency_ms", "teacher_steps")}


def _run_and_report(job_id: int, *, as_json: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nas.engine.controller import Controller
    from nas.service import executor_factory, front_members, job_summary
    from nas.views import dump_with_paths
    from workers.tasks.base import make_task

    from nas.cli.process_guards import hold_controller_lock

    settings = Settings()
    storage = _storage()
    job = storage.get_job(job_id)
    hold_controller_lock(storage.url, role=f"hwnas search/resume of job {job_id}")
    console = Console(stderr=True)
    with Progress(TextColumn("job {task.fields[job]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, disable=as_json) as progress:
        bar = progress.add_task("search", total=job.trials_budget, job=job_id, last="",
                                completed=storage.count_trials(job_id))

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "trial":
                detail = f"metric {data['metric']:.3f}" if data.get("metric") is not None else data["state"]
                progress.update(bar, advance=1, last=f"trial {data['number']}: {detail}")

        Controller(storage, settings, executor_factory=executor_factory(settings), on_event=on_event).run_job(job_id)
    summary = dump_with_paths(job_summary(storage, job_id))
    front = dump_with_paths(front_members(storage, job_id))
    if as_json:
        _emit_json({"job_id": job_id, "state": summary["state"], "trials": summary["trials"],
                    "front": [{k: r[k] for k in ("trial", "metric", "metrics", "latency_ms", "predicted_latency_ms",
                                                 "predicted_latency_std_ms", "measured_latency_ms", "arch",
                                                 "trained_steps")}
                              for r in front],
                    "latency_model": summary["latency_model"],
                    "baseline": _baseline_brief(summary["baseline"]),
                    "checkpoint": summary["checkpoint"], "message": summary["message"]})
    else:
        out = Console()
        metric_name = make_task(storage.get_job(job_id).spec["task"]).metric_name
        out.print(_front_table(front, target_ms=summary["latency_target_ms"], metric_name=metric_name))
        if summary["baseline"]:
            b = summary["baseline"]
            out.print(f"baseline (unpruned teacher): {b['metric_name']} {b['metric']:.4f} at {b['latency_ms']:.3f} ms")
        out.print(f"job {job_id} {summary['state']}: {summary['message']}")
        if summary["checkpoint"]:
            c = summary["checkpoint"]
            out.print(f"checkpoint: {c['path']}\narchive: {c['archive']} (sha256 {c['sha256']})")
    if summary["state"] == "failed":
        raise JobFailedError(f"job {job_id} failed: {summary['message']}")
    if summary["state"] == "cancelled":
        raise JobCancelledError(f"job {job_id} was cancelled: {summary['message']}")


@app.command()
def search(spec: Path = typer.Option(..., "--spec", help="job spec, YAML or JSON"),
           as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables")) -> None:
    """Submit a job and run it in the foreground; print its Pareto front and export the best checkpoint."""
    from nas.service import submit_job
    from nas.spec import load_spec

    parsed = load_spec(spec)
    job_id = submit_job(_storage(), parsed)
    _run_and_report(job_id, as_json=as_json)


@app.command()
def resume(job_id: int = typer.Argument(..., help="job id"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Continue an interrupted job (its lease must have expired) until its budget is spent."""
    _run_and_report(job_id, as_json=as_json)


@app.command()
def cancel(job_id: int = typer.Argument(...)) -> None:
    """Cancel a queued job, or stop a running one after its current trial (on the server when HWNAS_URL is set)."""
    client = _client()
    state = client.cancel(job_id)["state"] if client else _storage().request_cancel(job_id)
    typer.echo(f"job {job_id}: {'cancelled' if state == 'cancelled' else 'cancel requested; stops after its current trial'}")


@app.command()
def jobs(as_json: bool = typer.Option(False, "--json")) -> None:
    """List jobs, newest first (the server's when HWNAS_URL is set)."""
    from rich.console import Console
    from rich.table import Table

    from nas.service import job_summaries
    from nas.views import dump_with_paths

    client = _client()
    if client:
        rows = client.jobs(limit=100)
    else:
        storage = _storage()
        rows = dump_with_paths(job_summaries(storage, storage.list_jobs()))
    if as_json:
        _emit_json(rows)
        return
    table = Table(title="jobs")
    for column in ("id", "name", "state", "space", "device", "target ms", "trials", "message"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["job_id"]), r["name"] or "", r["state"], r["space"], r["device"],
                      str(r["latency_target_ms"]), f"{r['trials']}/{r['trials_budget']}", r["message"] or "")
    Console().print(table)


@app.command()
def show(job_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A job's state, its trials and its checkpoint."""
    from rich.console import Console
    from rich.table import Table

    from nas.service import job_summary, trial_views
    from nas.views import dump_with_paths

    storage = _storage()
    summary = dump_with_paths(job_summary(storage, job_id))
    trials = dump_with_paths(trial_views(storage, job_id))
    if as_json:
        _emit_json({**summary, "trial_list": trials})
        return
    console = Console()
    for key in ("job_id", "name", "state", "space", "device", "latency_target_ms", "strategy", "message",
                "hypervolume", "checkpoint"):
        console.print(f"{key}: {summary[key]}")
    if summary["baseline"]:
        console.print(f"baseline: {_baseline_brief(summary['baseline'])}")
    table = Table(title="trials")
    for column in ("trial", "state", "metric", "latency ms", "params", "error"):
        table.add_column(column)
    for t in trials:
        table.add_row(str(t["trial"]), t["state"], f"{t['metric']:.4f}" if t["metric"] is not None else "",
                      f"{t['latency_ms']:.3f}" if t["latency_ms"] is not None else "", str(t["params"] or ""),
                      t["error"] or "")
    console.print(table)


@app.command()
def pareto(job_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A job's Pareto front (task metric against latency; the server's when HWNAS_URL is set)."""
    from rich.console import Console

    from nas.service import front_view
    from nas.views import dump_with_paths

    client = _client()
    front = client.front_view(job_id) if client else dump_with_paths(front_view(_storage(), job_id))
    target_ms, metric_name, rows = front["latency_target_ms"], front["metric_name"], front["members"]
    if as_json:
        _emit_json({"job_id": job_id, "latency_target_ms": target_ms, "metric_name": metric_name, "front": rows})
        return
    Console().print(_front_table(rows, target_ms=target_ms, metric_name=metric_name))


@app.command()
def export(job_id: int = typer.Argument(...),
           trial: int | None = typer.Option(None, "--trial", help="trial number; default the best under target"),
           out: Path = typer.Option(..., "--out", help="a new or empty folder")) -> None:
    """Export a trial as a Hugging Face checkpoint folder (plus a .tar.gz beside it, with its sha256)."""
    from nas.service import export_job_trial

    result = export_job_trial(_storage(), job_id, trial_number=trial, out_dir=out, store=artifact_store())
    typer.echo(f"exported trial {result.trial} of job {job_id} to {result.path} (sha256 {result.sha256})")


devices_app = typer.Typer(no_args_is_help=True, help="Device profiles: where and how latency is measured.")
app.add_typer(devices_app, name="devices")

DEVICE_FIELDS = ("name", "backend", "threads", "batch_size", "seq_len", "dtype", "workload", "decode_tokens", "builtin")


@devices_app.command("add")
def devices_add(name: str = typer.Argument(..., help="profile name; also the Ray resource a device node carries"),
                backend: str = typer.Option("torch-cpu", help="torch-cpu, cuda or onnxruntime-cpu"),
                threads: int = typer.Option(1, help="intra-op threads (torch-cpu)"),
                batch_size: int = typer.Option(1, "--batch-size"),
                seq_len: int = typer.Option(64, "--seq-len", help="tokens per sequence (decode: the prompt)"),
                dtype: str = typer.Option("float32", help="float32, bfloat16, float16, or int8 (onnxruntime-cpu "
                                                          "only: dynamic quantisation)"),
                workload: str = typer.Option("forward", help="forward (one pass over --seq-len tokens) or decode "
                                                             "(per-token latency generating with the cache)"),
                decode_tokens: int = typer.Option(32, "--decode-tokens",
                                                  help="decode: tokens generated per run")) -> None:
    """Add a device profile."""
    from pydantic import ValidationError

    from latency_models.device import DeviceProfile
    from nas.errors import SpecError
    from nas.spec import format_errors

    try:
        profile = DeviceProfile(name=name, backend=backend, threads=threads, batch_size=batch_size,  # type: ignore[arg-type]
                                seq_len=seq_len, dtype=dtype, workload=workload,  # type: ignore[arg-type]
                                decode_tokens=decode_tokens)
    except ValidationError as exc:
        problems = format_errors(exc)
        raise SpecError("invalid device profile: " + "; ".join(problems), problems=problems) from None
    _storage().add_device(profile)
    typer.echo(f"added device profile {name!r}; profile a space on it with "
               f"`hwnas profile --device {name} --space SPACE`")


@devices_app.command("list")
def devices_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List device profiles."""
    from rich.console import Console
    from rich.table import Table

    rows = [p.model_dump() for p in _storage().list_devices()]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title="device profiles")
    for column in DEVICE_FIELDS:
        table.add_column(column)
    for r in rows:
        table.add_row(*(str(r[c]) for c in DEVICE_FIELDS))
    Console().print(table)


@devices_app.command("show")
def devices_show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A device profile and its latency models with their accuracy reports."""
    from rich.console import Console

    from nas.service import latency_model_view

    storage = _storage()
    profile = storage.device(name).model_dump()
    models = [latency_model_view(r).model_dump(mode="json") for r in storage.latency_models(device=name)]
    if as_json:
        _emit_json({**profile, "latency_models": models})
        return
    console = Console()
    for key in DEVICE_FIELDS:
        console.print(f"{key}: {profile[key]}")
    console.print(_reports_table(models, title=f"latency models on {name}"))


def _reports_table(models: list[dict[str, Any]], *, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("id", "kind", "space", "MAPE %", "within 5 %", "within 10 %", "Kendall tau",
                   "noise floor (MAPE / w10 / tau)", "profiling s", "predict ms", "held out"):
        table.add_column(column)
    for m in models:
        r, n = m["report"] or {}, (m["report"] or {}).get("noise_floor") or {}
        table.add_row(str(m.get("id", "")), m["kind"], f"{m['space']} v{m['space_version']}", f"{r.get('mape', 0):.2f}",
                      f"{r.get('within_5pct', 0):.1f}", f"{r.get('within_10pct', 0):.1f}",
                      f"{r.get('kendall_tau', 0):.3f}",
                      f"{n.get('mape', 0):.2f} / {n.get('within_10pct', 0):.1f} / {n.get('kendall_tau', 0):.3f}",
                      f"{r.get('profiling_s', 0):.1f}", f"{r.get('predict_ms', 0):.3f}", str(r.get("n_holdout", "")))
    return table


@app.command()
def profile(device: str = typer.Option(..., "--device", help="device profile name"),
            space: str = typer.Option(..., "--space", help="search space name"),
            space_options: str = typer.Option("{}", "--space-options", help="the space's options as JSON"),
            samples: int | None = typer.Option(None, "--samples", help="end-to-end archs to fit on (default 120)"),
            holdout: int | None = typer.Option(None, "--holdout", help="held-out archs for the report (default 100)"),
            seed: int = typer.Option(0, "--seed"),
            transfer_from: str | None = typer.Option(None, "--transfer-from",
                                                     help="fit a transfer model from this device's stored predictor "
                                                          "on at most 20 samples here (default samples: 20)"),
            as_json: bool = typer.Option(False, "--json", help="one JSON object per predictor, one per line")) -> None:
    """Build both latency predictors for a (device, space) on the device, store them, print their reports; with
    --transfer-from, one predictor transferred from another device's with a few measurements here."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nas.engine.latency import profile_and_store
    from nas.service import device_runner, parse_space_options

    settings = Settings()
    storage = _storage()
    profile_obj = storage.device(device)
    space_obj = parse_space_options(space, space_options)
    source = storage.device(transfer_from) if transfer_from else None
    if source is not None and samples is None:
        samples = 20
    plan = settings.profile_plan(samples=samples, holdout=holdout, seed=seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=as_json) as progress:
        bar = progress.add_task(f"profiling {space} on {device}", total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total, description=f"{stage} ({space} on {device})")

        outcome, ids = profile_and_store(storage, device_runner(settings), device=profile_obj, space=space_obj,
                                         plan=plan, on_progress=on_progress, transfer_from=source)
    models = [{"id": i, "space": outcome.space, "space_version": outcome.space_version, "kind": p["kind"],
               "report": p["report"]} for i, p in zip(ids, outcome.predictors)]
    if as_json:
        for m in models:
            typer.echo(json.dumps({"id": m["id"], **m["report"]}, default=str))
        return
    Console().print(_reports_table(models, title=f"latency predictors for {space} on {device} "
                                                 f"(held-out archs; noise floor = two measurements)"))


def _register_service_commands() -> None:
    from nas.cli import cluster_commands, service_commands

    for command in (service_commands.submit, service_commands.fetch, service_commands.serve,
                    cluster_commands.worker, cluster_commands.controller):
        app.command()(command)
    app.add_typer(service_commands.token_app, name="token")


_register_service_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where hwnas errors become exit codes."""
    import click

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(args=argv, standalone_mode=False)  # without standalone mode, click returns Exit's code
        if isinstance(code, int) and code:
            sys.exit(code)
    except HwnasError as exc:
        typer.echo(f"error: {cli_message(exc)}", err=True)
        sys.exit(exit_code_for(exc))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted; the job can be continued with `hwnas resume JOB`", err=True)
        sys.exit(130)
