"""Shared fixtures: isolated settings and databases (SQLite and the real PostgreSQL), tiny corpora."""

from __future__ import annotations

import contextlib
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search_spaces.testing import SMALL_SPACE_OPTIONS

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
POSTGRES_ADMIN_URL = os.environ.get("HWNAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    reason = _postgres_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@contextlib.contextmanager
def temporary_postgres_database(prefix: str = "hwnas_test") -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1:5432; its URL; dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hwnas.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hwnas.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    """A small synthetic corpus with learnable structure (repeated words)."""
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "latency", "expert", "router", "token", "search", "pareto"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(1500))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


# Environment for `hwnas` subprocesses: quick measuring, and a small profiling run when a job needs one.
FAST_MEASURING_ENV = {"HWNAS_METER_WARMUP": "1", "HWNAS_METER_REPEATS": "2", "HWNAS_METER_MIN_ROUNDS": "1",
                      "HWNAS_METER_MAX_ROUNDS": "2", "HWNAS_PROFILE_SAMPLES": "12",
                      "HWNAS_PROFILE_OVERHEAD_SAMPLES": "4", "HWNAS_PROFILE_HOLDOUT": "4"}


def fast_settings(**changes: Any) -> Any:
    """`Settings` with `FAST_MEASURING_ENV`'s values (for in-process controllers in tests)."""
    from nas.settings import Settings

    values = {k.removeprefix("HWNAS_").lower(): v for k, v in FAST_MEASURING_ENV.items()}
    return Settings(**{**values, **changes})


TINY_SPACE_OPTIONS = dict(SMALL_SPACE_OPTIONS)  # the contract suites' small space (search_spaces.testing)


TINY_WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "plot", "was", "a", "very", "and",
              "acting", "music", "story", "not", "quite", "really", "film"]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (width 32, 4 heads, FFN 64) with a word-level vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True).save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def working_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with weights large enough that every layer, head and unit changes its input (with the
    default initialisation a random layer is nearly the identity, and any sub-network nearly the base)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("working-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True).save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, initializer_range=0.3)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


def write_sentiment_tsv(path: Path, *, rows: int, seed: int, bom: bool = False) -> Path:
    """Sentences whose label (0/1) is carried by their good or bad words: learnable by a tiny BERT."""
    rng = random.Random(seed)
    filler = TINY_WORDS[6:]
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        words = [rng.choice(filler) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(TINY_WORDS[:3] if label else TINY_WORDS[3:6]))
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def sentiment_files(tmp_path: Path) -> tuple[Path, Path]:
    return (write_sentiment_tsv(tmp_path / "train.tsv", rows=400, seed=1),
            write_sentiment_tsv(tmp_path / "dev.tsv", rows=80, seed=2))


def tiny_pruned_bert_options(folder: Path, **changes: object) -> dict[str, object]:
    return {"base_model": str(folder), "ffn_step": 16, "teacher_steps": 0, "teacher_learning_rate": 3e-3,
            "importance_batches": 2, **changes}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A local S3-compatible server (moto, from PyPI) on loopback; its endpoint URL. Credentials are dummies
    set in the environment, as a deployment sets real ones."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    pytest.importorskip("s3fs", reason="s3fs is in the s3 and test extras")
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(s3_server: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh bucket on the local S3 server: (artifacts URL, fsspec options)."""
    import s3fs

    name = f"hwnas-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_server)
    fs.mkdir(name)
    yield f"s3://{name}/artifacts", {"endpoint_url": s3_server}
    fs.rm(name, recursive=True)
