"""Text corpora for language modelling: files, and a built-in corpus every Python installation has."""

from __future__ import annotations

import hashlib
import sysconfig
from functools import lru_cache
from pathlib import Path

from search_spaces.data_paths import DATASET_PREFIX, parse_dataset_ref
from search_spaces.errors import DataError

BUILTIN_PREFIX = "builtin:"
BUILTIN_CORPORA = ("python-stdlib",)


def is_builtin(source: str) -> bool:
    return source.startswith(BUILTIN_PREFIX)


def check_source(source: str) -> None:
    """Raise `DataError` unless `source` is a readable file, a built-in corpus or a `dataset:` reference
    (checked for its form here; the service resolves it to its stored file before the task reads it)."""
    if source.startswith(DATASET_PREFIX):
        try:
            parse_dataset_ref(source)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return
    if is_builtin(source):
        name = source[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_CORPORA:
            raise DataError(f"unknown built-in corpus {source!r}; use one of "
                            + ", ".join(BUILTIN_PREFIX + c for c in BUILTIN_CORPORA) + " or a file path")
        return
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist or is not a file; "
                        "give the path of a UTF-8 text file")


@lru_cache(maxsize=4)
def read_corpus(source: str, *, max_bytes: int) -> bytes:
    """The first `max_bytes` bytes of a corpus (cached per process: workers evaluate many trials)."""
    if is_builtin(source):
        return _python_stdlib_corpus(max_bytes)
    path = Path(source).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes)
    except OSError as exc:
        raise DataError(f"cannot read data file {str(path)!r}: {exc}") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data


def _python_stdlib_corpus(max_bytes: int) -> bytes:
    """Python source of the standard library's top-level modules, in name order.

    Present on any machine that runs hwnas; its exact bytes depend on the Python version, so the
    job records the corpus's sha256.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts: list[bytes] = []
    size = 0
    for path in sorted(stdlib.glob("*.py")):
        chunk = path.read_bytes()
        parts.append(b"# ---- " + path.name.encode() + b"\n" + chunk + b"\n")
        size += len(parts[-1])
        if size >= max_bytes:
            break
    if not parts:
        raise DataError(f"built-in corpus python-stdlib: no .py files under {stdlib}")
    return b"".join(parts)[:max_bytes]


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
