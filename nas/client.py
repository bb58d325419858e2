"""A small Python client of the hwnas API, for notebooks and for the CLI's client mode.

    from nas.client import HwnasClient
    client = HwnasClient("http://127.0.0.1:8000", token)        # or HwnasClient.from_env()
    job = client.submit("nas/examples/demo.yaml")
    client.wait(job["job_id"])                                 # a progress bar, from server-sent events
    client.front(job["job_id"])                                # a pandas DataFrame
    client.download_best(job["job_id"], "best/", max_latency_ms=0.8)

HTTP errors come back as the hwnas error their status stands for (`nas.errors.error_for_status`).
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import HwnasError, SpecError, error_for_status
from nas.views import CheckpointOut, FrontMemberOut, FrontOut, JobOut, JobPage, TrialPage
from search_spaces.data_paths import dataset_ref, is_reference

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from nas.settings import Settings
    from nas.spec import JobSpec

API = "/api/v1"
FINISHED = ("completed", "failed", "cancelled")


class HwnasClient:
    """Talks to one hwnas server with one bearer token. `http` replaces the HTTP client (tests)."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0, http: httpx.Client | None = None) -> None:
        import httpx

        if not token:
            raise SpecError("HWNAS_TOKEN: empty; create a token with `hwnas token create --scope submit`")
        self.url = url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_settings(cls, settings: Settings) -> HwnasClient:
        if not settings.url or settings.token is None:
            raise SpecError("HWNAS_URL and HWNAS_TOKEN: both must be set to talk to a server")
        return cls(settings.url, settings.token.get_secret_value())

    @classmethod
    def from_env(cls) -> HwnasClient:
        from nas.settings import Settings

        return cls.from_settings(Settings())

    # ---- plumbing --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, API + path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise HwnasError(f"cannot reach the hwnas server at {self.url}: {exc}; check HWNAS_URL") from None
        self._raise_for(response)
        return response.json()

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text[:300]
        raise error_for_status(response.status_code, str(detail))

    # ---- datasets --------------------------------------------------------------------------------
    def upload_dataset(self, path: str | Path, *, name: str, fmt: str, progress: bool = False) -> dict[str, Any]:
        """Upload a local file as a dataset (streamed; `fmt`: text, tsv, csv or jsonl). Uploading the same
        bytes under the same name again returns the stored dataset."""
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        path = Path(path)
        size = path.stat().st_size
        with Progress(TextColumn(f"upload {path.name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      disable=not progress) as bar, path.open("rb") as handle:
            task = bar.add_task("upload", total=size)
            reader = _ProgressReader(handle, lambda n: bar.advance(task, n))
            return self._request("POST", "/datasets", files={"file": (path.name, reader, "application/octet-stream")},
                                 data={"name": name, "format": fmt})

    def datasets(self, *, sha256: str | None = None) -> list[dict[str, Any]]:
        params = {"sha256": sha256} if sha256 else {"limit": 500}
        return self._request("GET", "/datasets", params=params)["items"]

    def delete_dataset(self, dataset_id: int) -> dict[str, Any]:
        return self._request("DELETE", f"/datasets/{dataset_id}")

    def upload_spec_files(self, spec: JobSpec, *, progress: bool = False) -> dict[str, Any]:
        """The spec (as JSON) with each local data file it names replaced by `dataset:sha256:...`, uploading
        the files the server does not hold yet (a server has no access to the client's disk)."""
        task = spec.task
        changes: dict[str, str] = {}
        for field, kind in type(task).data_fields.items():
            value = getattr(task, field, None)
            if kind != "file" or not isinstance(value, str) or is_reference(value) or not Path(value).is_file():
                continue
            path = Path(value)
            digest = _sha256_of(path)
            if not any(d["format"] in type(task).dataset_formats for d in self.datasets(sha256=digest)):
                fmt = _dataset_format(task, path)
                stem = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem)[:150] or "data"
                self.upload_dataset(path, name=f"{stem}-{digest[:12]}", fmt=fmt, progress=progress)
            changes[field] = dataset_ref(digest)
        data = spec.model_dump(mode="json")
        data["task"].update(changes)
        return data

    # ---- jobs ------------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any] | str | Path, *, progress: bool = False) -> dict[str, Any]:
        """Submit a job; a path is read like `hwnas search --spec` (data paths relative to the file), and the
        local data files it names are uploaded as datasets first (skipped when the server has their bytes)."""
        if isinstance(spec, (str, Path)):
            from nas.spec import load_spec

            spec = self.upload_spec_files(load_spec(spec), progress=progress)
        return _checked(JobOut, self._request("POST", "/jobs", json=spec))

    def job(self, job_id: int) -> dict[str, Any]:
        return _checked(JobOut, self._request("GET", f"/jobs/{job_id}"))

    def jobs(self, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
        return _checked(JobPage, self._request("GET", "/jobs", params=params))["items"]

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/cancel")

    def trials(self, job_id: int, *, state: str | None = None, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every trial of the job (paged through), by number."""
        items: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"offset": len(items), "limit": page_size, **({"state": state} if state else {})}
            page = _checked(TrialPage, self._request("GET", f"/jobs/{job_id}/trials", params=params))
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                return items

    def front_view(self, job_id: int) -> dict[str, Any]:
        """The front with its target, metric name and direction (the API's `GET /jobs/{id}/front`)."""
        return _checked(FrontOut, self._request("GET", f"/jobs/{job_id}/front"))

    def front(self, job_id: int) -> pd.DataFrame:
        """The Pareto front as a DataFrame, one row per member, fastest first."""
        import pandas as pd

        front = self.front_view(job_id)
        columns = ["trial", "metric", "latency_ms", "predicted_latency_ms", "predicted_latency_std_ms",
                   "measured_latency_ms", "params", "under_target", "arch_text", "arch_hash"]
        frame = pd.DataFrame([{c: m[c] for c in columns} for m in front["members"]], columns=columns)
        frame.attrs.update(metric_name=front["metric_name"], latency_target_ms=front["latency_target_ms"])
        return frame.rename(columns={"metric": front["metric_name"]})

    def best(self, job_id: int, *, max_latency_ms: float | None = None) -> dict[str, Any]:
        params = {"max_latency_ms": max_latency_ms} if max_latency_ms is not None else {}
        return _checked(FrontMemberOut, self._request("GET", f"/jobs/{job_id}/best", params=params))

    def events(self, job_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-sent events of the job: ('progress', job) on each change, then ('end', ...)."""
        with self._http.stream("GET", f"{API}/jobs/{job_id}/events", headers=self._headers,
                               timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            kind = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    yield kind, json.loads(line[5:])
                    kind = "message"

    def wait(self, job_id: int, *, progress: bool = True, poll_s: float = 2.0) -> dict[str, Any]:
        """Block until the job finishes (with a progress bar); server-sent events, polling if they break."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        job = self.job(job_id)
        with Progress(TextColumn(f"job {job_id}" + " {task.fields[state]}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), disable=not progress) as bar:
            task = bar.add_task("job", total=job["trials_budget"], completed=job["trials"], state=job["state"])
            try:
                for kind, data in self.events(job_id):
                    if kind == "progress":
                        bar.update(task, completed=data["trials"], state=data["state"])
                    if kind == "end":
                        break
            except HwnasError:
                raise
            except Exception:  # noqa: BLE001 - a broken stream: fall back to polling
                pass
            while (job := self.job(job_id))["state"] not in FINISHED:
                bar.update(task, completed=job["trials"], state=job["state"])
                time.sleep(poll_s)
            bar.update(task, completed=job["trials"], state=job["state"])
        return job

    # ---- checkpoints -----------------------------------------------------------------------------
    def export(self, job_id: int, *, trial: int | None = None, max_latency_ms: float | None = None) -> dict[str, Any]:
        """The checkpoint of a trial, or of the best under `max_latency_ms` (exported on the server if needed)."""
        body = {k: v for k, v in {"trial": trial, "max_latency_ms": max_latency_ms}.items() if v is not None}
        return _checked(CheckpointOut, self._request("POST", f"/jobs/{job_id}/checkpoints", json=body))

    def download(self, checkpoint: dict[str, Any], out_dir: str | Path) -> Path:
        """Stream the archive, check its sha256 against the header and the listing, unpack it into `out_dir`."""
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()):
            raise SpecError(f"--out: {str(out)!r} exists and is not empty; give a new or empty folder")
        digest = hashlib.sha256()
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / checkpoint["archive_name"]
            with self._http.stream("GET", checkpoint["download_url"], headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                header = response.headers.get("X-Checkpoint-SHA256")
                with archive.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        handle.write(chunk)
            if digest.hexdigest() != checkpoint["sha256"] or header != checkpoint["sha256"]:
                raise HwnasError(f"checkpoint download corrupted: sha256 {digest.hexdigest()}, expected "
                                 f"{checkpoint['sha256']} (header {header}); download it again")
            _unpack(archive, out)
        return out

    def download_best(self, job_id: int, out_dir: str | Path, *, max_latency_ms: float | None = None) -> Path:
        return self.download(self.export(job_id, max_latency_ms=max_latency_ms), out_dir)


class _ProgressReader:
    """A file object that reports each read (httpx streams multipart files by reading them in chunks)."""

    def __init__(self, handle: Any, advance: Any) -> None:
        self._handle = handle
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._advance(len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dataset_format(task: Any, path: Path) -> str:
    """The dataset format of a local file a task names: text for a corpus, else the table's format."""
    formats = type(task).dataset_formats
    if formats == ("text",):
        return "text"
    fmt = getattr(task, "format", "auto")
    if fmt != "auto":
        return str(fmt)
    from workers.tasks.table_files import SUFFIXES

    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise SpecError(f"task.format: cannot tell the format of {path} from its suffix; set task.format") from None


def _unpack(archive: Path, out: Path) -> None:
    """Unpack a checkpoint archive (one top folder) so that its files land directly in `out`."""
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 2 or not member.isfile():
                continue
            member.name = str(Path(*parts[1:]))
            members.append(member)
        out.mkdir(parents=True, exist_ok=True)
        tar.extractall(out, members=members, filter="data")


def _checked(model: Any, answer: Any) -> Any:
    """The server's answer read through the output model the server itself answers with (`nas.views`): the
    same fields and types as `hwnas ... --json`; an answer this client cannot read is a clear error."""
    from pydantic import ValidationError

    try:
        return model.model_validate(answer).model_dump(mode="json")
    except ValidationError as exc:
        raise HwnasError(f"the server's answer is not a {model.__name__} this client understands ({exc.error_count()} "
                         f"problems, first: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); upgrade hwnas on the "
                         "client or the server") from None
