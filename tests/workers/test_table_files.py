"""Loading labelled examples: each format, the GLUE layouts as they are, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search_spaces.errors import DataError
from tests.conftest import SHARED_DATA
from workers.tasks.table_files import Columns, read_file, read_hub_split

SINGLE = Columns(text="sentence", pair=None, label="label")
PAIR = Columns(text="#1 String", pair="#2 String", label="Quality")


def test_tsv_with_bom_and_unbalanced_quotes(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text('\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                    '1\t1\t2\tHe said " no .\t" No , he said .\n'
                    '0\t3\t4\tA , b\tc\n', encoding="utf-8")
    examples = read_file(path, fmt="auto", columns=PAIR, field="task.train")
    assert examples.texts == ['He said " no .', "A , b"]
    assert examples.pairs == ['" No , he said .', "c"]
    assert examples.labels == ["1", "0"] and examples.lines == [2, 3]


def test_csv_with_quoted_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('sentence,label\n"fine, really",pos\n"two\nlines",neg\n', encoding="utf-8")
    examples = read_file(path, fmt="auto", columns=SINGLE, field="task.train")
    assert examples.texts == ["fine, really", "two\nlines"] and examples.labels == ["pos", "neg"]


def test_jsonl_with_integer_labels_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"sentence": "a", "label": 1}) + "\n\n" + json.dumps({"sentence": "b", "label": 0.0}),
                    encoding="utf-8")
    examples = read_file(path, fmt="auto", columns=SINGLE, field="task.train")
    assert examples.labels == ["1", "0"] and examples.lines == [1, 3]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.tsv", "sentence\tlabel\nfine\t1\ntoo\tmany\tfields\n", r"bad.tsv:3: expected 2 TSV fields"),
    ("bad.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": \n', r"bad.jsonl:2: not a JSON object"),
    ("list.jsonl", '["a", 1]\n', r"list.jsonl:1: a JSONL line must be a JSON object"),
    ("cols.tsv", "text\tlabel\nfine\t1\n", r"cols.tsv:2: no column 'sentence' \(columns: 'text', 'label'\)"),
    ("empty.tsv", "sentence\tlabel\nfine\t\n", r"empty.tsv:2: empty label"),
    ("header.tsv", "sentence\tlabel\n", r"holds no examples"),
    ("nothing.csv", "", r"nothing.csv: the file is empty"),
    ("data.txt", "sentence\tlabel\n", r"cannot tell the format .* set task.format"),
])
def test_bad_files_name_the_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_file(path, fmt="auto", columns=SINGLE, field="task.train")


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.tsv"
    path.write_bytes("sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_file(path, fmt="auto", columns=SINGLE, field="task.train")
    with pytest.raises(DataError, match=r"task.validation: no such file"):
        read_file(tmp_path / "missing.tsv", fmt="auto", columns=SINGLE, field="task.validation")


def test_hub_dataset_offline_fails_clearly() -> None:
    with pytest.raises(DataError, match=r"cannot load Hugging Face dataset 'glue'.*offline.*task.train"):
        read_hub_split("glue", config="sst2", split="train", columns=SINGLE, field="task.dataset")


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data/sst2 (see its README)")
def test_glue_sst2_and_mrpc_load_as_they_are() -> None:
    sst2 = read_file(SHARED_DATA / "sst2" / "dev.tsv", fmt="auto", columns=SINGLE, field="task.validation")
    assert len(sst2) == 872 and set(sst2.labels) == {"0", "1"}
    mrpc = read_file(SHARED_DATA / "mrpc" / "dev.tsv", fmt="auto", columns=PAIR, field="task.validation")
    assert len(mrpc) == 408 and set(mrpc.labels) == {"0", "1"} and mrpc.pairs is not None
    assert mrpc.pairs[0].startswith('" The foodservice pie business')
