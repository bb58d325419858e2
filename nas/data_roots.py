"""The server's rule for paths in a job spec: only inside its data roots (`HWNAS_DATA_ROOTS`).

A spec sent over the network is read by the server, with the server's rights. So before anything else
looks at it (a validator that checks whether a file exists would tell a remote user so), every field that
names the server's disk (declared by the task spec and the space options, `data_paths`) is resolved,
symlinks and `..` followed, and refused unless it lands inside a data root. The refusal is the same for
a file that exists and one that does not, and never states a size. A path that passes is replaced by its
resolved form, so what the job later reads is what was checked. `builtin:` corpora and `dataset:`
references are data the service owns and always pass. The local CLI (`hwnas search`, no server) does not
use this: there the user reads their own files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.errors import SpecError
from search_spaces.data_paths import DataPath

UPLOAD_FIX = ("upload the file as a dataset (POST /api/v1/datasets, or `hwnas submit SPEC`, which uploads the "
              "local files a spec names) and name it as dataset:NAME")


def declared_paths(data: dict[str, Any]) -> list[DataPath]:
    """Every field of a raw spec that names the server's disk, by the task's and the space's declarations."""
    from search_spaces.base import SPACES
    from workers.tasks.base import task_classes

    paths: list[DataPath] = []
    task = data.get("task")
    if isinstance(task, dict):
        cls = task_classes().get(str(task.get("kind")))
        if cls is not None:
            paths += cls.spec_model.data_paths(task)
    options = data.get("space_options")
    space = data.get("space")
    if isinstance(options, dict) and isinstance(space, str) and space in SPACES.names():
        paths += SPACES.get(space).options_model.data_paths(options)
    return paths


def _inside(path: str, roots: Sequence[Path]) -> bool:
    return any(path == str(root) or path.startswith(str(root).rstrip(os.sep) + os.sep) for root in roots)


def _check_one(item: DataPath, roots: Sequence[Path], private: Sequence[Path]) -> str:
    """The resolved path of an allowed item; SpecError otherwise (the same words whether it exists or not)."""
    if item.kind == "refused":
        raise SpecError(f"{item.field}: not accepted by the server: {item.reason}")
    if item.kind == "internal":
        raise SpecError(f"{item.field}: set by the job's own preparation, never in a spec sent to the server; "
                        "remove it")
    if "\x00" in item.value:
        raise SpecError(f"{item.field}: a path may not contain a NUL character; {UPLOAD_FIX}")
    if not os.path.isabs(item.value):
        raise SpecError(f"{item.field}: a spec sent to the server needs a dataset:NAME, a builtin: corpus or an "
                        f"absolute path inside the server's data roots, got {item.value!r}; `hwnas submit SPEC` "
                        "uploads files named relative to the spec file")
    resolved = os.path.realpath(item.value)
    if not roots:
        raise SpecError(f"{item.field}: this server reads no paths (its data roots, HWNAS_DATA_ROOTS, are empty), "
                        f"got {item.value!r}; {UPLOAD_FIX}")
    if not _inside(resolved, roots) or _inside(resolved, private):
        raise SpecError(f"{item.field}: the server reads paths only inside its data roots (HWNAS_DATA_ROOTS), and "
                        f"{item.value!r} is not inside one once symlinks and '..' are followed; {UPLOAD_FIX}, or "
                        "ask the server's admin to add a data root")
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        raise SpecError(f"{item.field}: no such {item.kind} in the data roots: {item.value!r}; check the "
                        "path") from None
    wanted = stat.S_ISDIR(mode) if item.kind == "folder" else stat.S_ISREG(mode)
    if not wanted:
        raise SpecError(f"{item.field}: {item.value!r} is not a regular {item.kind}; give a {item.kind} "
                        "(devices, pipes and sockets are never read)")
    return resolved


def check_server_paths(data: dict[str, Any], *, roots: Sequence[Path], private: Sequence[Path] = ()) -> dict[str, Any]:
    """A copy of the raw spec `data` whose path fields are resolved; SpecError listing every refused field.

    `private`: folders never read even inside a root (the service's own database and artifacts).
    """
    private = [Path(os.path.realpath(p)) for p in private]
    problems: list[str] = []
    resolved: dict[str, str] = {}
    for item in declared_paths(data):
        try:
            resolved[item.field] = _check_one(item, roots, private)
        except SpecError as exc:
            problems.append(str(exc))
    if problems:
        raise SpecError("invalid job spec: " + "; ".join(problems), problems=problems)
    out = {**data}
    for field, value in resolved.items():
        section, name = field.split(".", 1)
        out[section] = {**out[section], name: value}
    return out
