import json
from types import SimpleNamespace

import pytest

from llm_platform.trainer.data.sources import iter_documents

from .conftest import squad_paragraphs


def _source(**kw):
    defaults = {"type": "jsonl", "path": None, "include": "*.py", "field": "text", "max_docs": None}
    return SimpleNamespace(**{**defaults, "config": None, "split": "train", **kw})


@pytest.fixture
def jsonl_corpus(tmp_path):
    paragraphs = squad_paragraphs()[:300]
    for part in range(3):
        lines = [json.dumps({"id": f"p{part}-{i}", "text": t}) for i, t in enumerate(paragraphs[part::3])]
        (tmp_path / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path, paragraphs


def test_jsonl_glob_streams_every_record(jsonl_corpus):
    folder, paragraphs = jsonl_corpus
    docs = list(iter_documents(_source(path=str(folder / "*.jsonl"))))
    assert sorted(d.text for d in docs) == sorted(paragraphs)
    assert docs[0].id == "p0-0"


@pytest.mark.parametrize("num_shards", [2, 3, 5])
def test_shards_are_disjoint_and_cover_the_source(jsonl_corpus, num_shards):
    folder, paragraphs = jsonl_corpus
    source = _source(path=str(folder / "*.jsonl"))
    shards = [[d.id for d in iter_documents(source, k, num_shards)] for k in range(num_shards)]
    ids = [i for shard in shards for i in shard]
    assert len(ids) == len(set(ids)) == len(paragraphs)
    assert all(shards)


def test_max_docs_bounds_the_total_over_shards(jsonl_corpus):
    folder, _ = jsonl_corpus
    source = _source(path=str(folder / "*.jsonl"), max_docs=10)
    assert len(list(iter_documents(source))) == 10
    assert sum(len(list(iter_documents(source, k, 4))) for k in range(4)) == 10


def test_parquet_and_text_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paragraphs = squad_paragraphs()[:50]
    pq.write_table(pa.table({"content": paragraphs}), tmp_path / "a.parquet")
    docs = list(iter_documents(_source(type="parquet", path=str(tmp_path / "*.parquet"), field="content")))
    assert [d.text for d in docs] == paragraphs
    (tmp_path / "one.txt").write_text(paragraphs[0])
    assert [d.text for d in iter_documents(_source(type="files", path=str(tmp_path / "*.txt")))] == paragraphs[:1]


def test_bad_records_name_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no string field 'text'"):
        list(iter_documents(_source(path=str(tmp_path / "bad.jsonl"))))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        list(iter_documents(_source(path=str(tmp_path / "none-*.jsonl"))))


def test_s3_prefix_is_streamed(s3_bucket):
    import boto3

    paragraphs = squad_paragraphs()[:40]
    client = boto3.client("s3")
    for part in range(2):
        body = "\n".join(json.dumps({"text": t}) for t in paragraphs[part::2])
        client.put_object(Bucket=s3_bucket, Key=f"corpus/part-{part}.jsonl", Body=body.encode())
    docs = list(iter_documents(_source(path=f"s3://{s3_bucket}/corpus/part-*.jsonl")))
    assert sorted(d.text for d in docs) == sorted(paragraphs)
    assert docs[0].source == f"s3://{s3_bucket}/corpus/part-0.jsonl"


def test_hugging_face_dataset_from_a_local_folder(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    paragraphs = squad_paragraphs()[:30]
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in paragraphs) + "\n")
    source = _source(type="hf", path=str(tmp_path / "ds"))
    assert [d.text for d in iter_documents(source)] == paragraphs
    halves = [[d.text for d in iter_documents(source, k, 2)] for k in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(paragraphs)


def test_a_glob_cannot_follow_a_symlink_out_of_the_allowed_folders(tmp_path, monkeypatch):
    """The spec said data/**; the symlink inside led to outside/. With LLMP_READ_ROOTS set, the reader refuses."""
    (tmp_path / "data").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "data" / "a.txt").write_text("kept text " * 10)
    (tmp_path / "outside" / "hostname.txt").write_text("secret host")
    (tmp_path / "data" / "link").symlink_to(tmp_path / "outside")
    source = SimpleNamespace(type="files", path=f"{tmp_path}/data/**/*.txt", max_docs=None)
    monkeypatch.setenv("LLMP_READ_ROOTS", str(tmp_path / "data"))
    with pytest.raises(PermissionError, match=r"source path '.*data/\*\*/\*\.txt': .*outside"):
        list(iter_documents(source))
    (tmp_path / "data" / "link").unlink()
    assert [d.text for d in iter_documents(source)] == ["kept text " * 10]
    monkeypatch.delenv("LLMP_READ_ROOTS")  # the local user's own machine: no restriction
    (tmp_path / "data" / "link").symlink_to(tmp_path / "outside")
    assert len(list(iter_documents(source))) == 2
