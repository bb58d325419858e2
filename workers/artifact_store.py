"""Where the service's artifacts live: one local folder, or S3-compatible object storage behind it.

The artifacts are the uploaded datasets, the spaces' caches (fine-tuned teachers, supernets), each trial's
weights and the exported checkpoints. Every process (API, controllers, workers) reads and writes them under
its local artifacts folder (`HWNAS_DATA_DIR/artifacts`), and the paths that cross processes (in tasks and in
the database) are paths in that folder. With no store URL that folder must be shared (one machine, or a
ReadWriteMany volume). With `HWNAS_ARTIFACTS_URL` (`s3://bucket/prefix`, or any `fsspec` URL) the object
store is the shared copy and each process's folder is a cache of it: a file is written locally, then
pushed; a file named in a task or a record is pulled when it is not there. A key in the store is the file's
path relative to the artifacts folder, so every process must use the same artifacts folder path (the
container image fixes it).

The object store is reached only through `fsspec` (`s3fs` for `s3://`). Credentials never travel with
tasks: each process reads its own (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or an instance role), and
`ArtifactLocation.options` refuses secrets. Files are written once under content-, trial- or rung-specific
names (a retried trial rewrites the same bytes: training is seeded), so "present with the same size" means
"the same file"; a file that changes in place (a training checkpoint, a progress note) is pulled with
`overwrite=True`. A folder is pushed with its `.json` files last: those are
the markers (`teacher.json`, `supernet.json`) that readers take as "complete".
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.errors import ArtifactStoreError

logger = logging.getLogger(__name__)
_SECRET = re.compile(r"(secret|password|token|key$|^key|credential)", re.IGNORECASE)
_SKIPPED = re.compile(r"(\.tmp$|\.lock$|^\.)")  # staging files, locks, hidden staging folders


def _left_out(parts: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """A staging file, a lock, or under a top-level folder that `exclude` names (glob patterns)."""
    return (any(_SKIPPED.search(part) for part in parts)
            or any(fnmatch.fnmatchcase(parts[0], pattern) for pattern in exclude))


def secret_options(options: Mapping[str, Any]) -> list[str]:
    """The option names that look like credentials (refused: they would travel inside every task)."""
    return sorted(name for name in options if _SECRET.search(name))


@dataclass(frozen=True)
class ArtifactLocation:
    """Plain values (Ray-serialisable) that say where a process finds the artifacts."""

    local_dir: str
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # fsspec storage options, e.g. endpoint_url

    def __post_init__(self) -> None:
        bad = secret_options(self.options)
        if bad:
            raise ValueError(f"artifact store options {bad} look like credentials; give them to each process in "
                             "its environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) instead")

    def to_dict(self) -> dict[str, Any]:
        return {"local_dir": self.local_dir, "url": self.url, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> ArtifactLocation | None:
        return None if value is None else cls(local_dir=value["local_dir"], url=value.get("url"),
                                              options=dict(value.get("options") or {}))


class ArtifactStore:
    """Pull and push files between the local artifacts folder and the object store (no-ops without one)."""

    def __init__(self, location: ArtifactLocation) -> None:
        self.location = location
        self.local_dir = Path(os.path.realpath(location.local_dir))
        self._fs: Any = None
        self._root = ""
        if location.url:
            from fsspec.core import url_to_fs

            self._fs, root = url_to_fs(location.url, **location.options)
            self._root = root.rstrip("/")

    @classmethod
    def of(cls, location: ArtifactLocation | Mapping[str, Any] | None) -> ArtifactStore | None:
        if isinstance(location, Mapping):
            location = ArtifactLocation.from_dict(location)
        return None if location is None else cls(location)

    @property
    def remote(self) -> bool:
        return self._fs is not None

    @contextmanager
    def _transfer(self, what: str, key: str) -> Iterator[None]:
        """Any failure of the store as an ArtifactStoreError naming the store, the file and the fix."""
        try:
            yield
        except ArtifactStoreError:
            raise
        except Exception as exc:  # noqa: BLE001  (botocore, aiohttp and OS errors alike)
            raise ArtifactStoreError(
                f"artifact store {self.location.url}: could not {what} {key!r}: {type(exc).__name__}: {exc}; check "
                "HWNAS_ARTIFACTS_URL, HWNAS_ARTIFACTS_OPTIONS (endpoint_url) and this process's credentials "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)") from exc

    def key(self, path: str | Path) -> str | None:
        """`path` relative to the artifacts folder (posix), or None when it lies outside."""
        try:
            relative = Path(os.path.realpath(path)).relative_to(self.local_dir)
        except ValueError:
            return None
        return relative.as_posix() if relative.parts else None

    def _remote(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _remote_files(self, key: str) -> dict[str, int]:
        """Files in the store under `key` (a file or a folder), by key relative to `key`, with their sizes."""
        remote = self._remote(key)
        self._fs.invalidate_cache(remote)  # another process may have written since this one last listed
        try:
            if self._fs.isfile(remote):
                return {"": int(self._fs.size(remote))}
            found = self._fs.find(remote, detail=True)
        except FileNotFoundError:
            return {}
        prefix = remote.rstrip("/") + "/"
        return {name[len(prefix):]: int(info.get("size") or 0) for name, info in found.items()
                if name.startswith(prefix) and info.get("type", "file") == "file"}

    def pull(self, path: str | Path, *, overwrite: bool = False, exclude: Iterable[str] = ()) -> bool:
        """Fetch the file or folder at `path` from the store where the local copy is missing or differs in size
        (`overwrite`: always). True when the store holds it (or there is no store and it exists locally)."""
        key = self.key(path)
        if not self.remote or key is None:
            return Path(path).exists()
        with self._transfer("pull", key):
            return self._pull(key, overwrite=overwrite, skip=tuple(exclude))

    def _pull(self, key: str, *, overwrite: bool, skip: tuple[str, ...]) -> bool:
        files = self._remote_files(key)
        for relative, size in sorted(files.items(), key=lambda item: (item[0].endswith(".json"), item[0])):
            if relative and _left_out(Path(relative).parts, skip):
                continue
            local = self.local_dir / key / relative if relative else self.local_dir / key
            if not overwrite and local.is_file() and local.stat().st_size == size:
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.{os.getpid()}.pull.tmp")
            try:
                self._fs.get_file(self._remote(f"{key}/{relative}" if relative else key), str(tmp))
                tmp.replace(local)
            finally:
                tmp.unlink(missing_ok=True)
            logger.debug("pulled %s", local)
        return bool(files)

    def push(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Upload the file or folder at `path` (a folder: the files the store lacks or holds at another size;
        its `.json` files last). A file named directly is always uploaded."""
        key = self.key(path)
        if not self.remote or key is None:
            return
        with self._transfer("push", key):
            self._push(key, skip=tuple(exclude))

    def _push(self, key: str, *, skip: tuple[str, ...]) -> None:
        local = self.local_dir / key
        if local.is_file():
            self._fs.put_file(str(local), self._remote(key))
            return
        if not local.is_dir():
            return
        held = self._remote_files(key)
        todo: list[tuple[str, Path]] = []
        for file in local.rglob("*"):
            relative = file.relative_to(local)
            if not file.is_file() or _left_out(relative.parts, skip):
                continue
            if held.get(relative.as_posix()) != file.stat().st_size:
                todo.append((relative.as_posix(), file))
        for relative, file in sorted(todo, key=lambda item: (item[0].endswith(".json"), item[0])):
            self._fs.put_file(str(file), self._remote(f"{key}/{relative}"))
            logger.debug("pushed %s", file)

    def delete(self, path: str | Path) -> None:
        """Remove the file or folder at `path` from the store (the local copy is the caller's)."""
        key = self.key(path)
        if not self.remote or key is None:
            return
        remote = self._remote(key)
        with self._transfer("delete", key):
            try:
                if self._fs.exists(remote):
                    self._fs.rm(remote, recursive=True)
            except FileNotFoundError:
                pass

    def pull_referenced(self, *values: Any) -> None:
        """Pull every file or folder under the artifacts folder that `values` name (strings in nested dicts
        and lists: a task's data paths, a prepared space's teacher, a supernet, weights to resume from)."""
        if not self.remote:
            return
        seen: set[str] = set()
        stack = list(values)
        while stack:
            value = stack.pop()
            if isinstance(value, Mapping):
                stack.extend(value.values())
            elif isinstance(value, (list, tuple)):
                stack.extend(value)
            elif isinstance(value, str) and os.path.isabs(value) and value not in seen:
                seen.add(value)
                if self.key(value) is not None:
                    self.pull(value)


def pull_referenced(location: ArtifactLocation | Mapping[str, Any] | None, *values: Any) -> None:
    store = ArtifactStore.of(location)
    if store is not None:
        store.pull_referenced(*values)
