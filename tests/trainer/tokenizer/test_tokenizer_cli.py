import json

from typer.testing import CliRunner

from llm_platform.cli_tokenizer import app
from llm_platform.trainer.tokenizer import Tokenizer

runner = CliRunner()


def write_corpus(tmp_path, inline_corpus):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(inline_corpus), encoding="utf-8")
    return path


def test_train_writes_a_loadable_tokenizer(tmp_path, inline_corpus):
    corpus = write_corpus(tmp_path, inline_corpus)
    result = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "500"])
    assert result.exit_code == 0, result.output
    assert "MB/s" in result.output
    assert Tokenizer.load(tmp_path / "tok").vocab_size == 500


def test_train_sentencepiece_unigram(tmp_path, inline_corpus):
    corpus = write_corpus(tmp_path, inline_corpus)
    args = ["train", str(corpus), "--out", str(tmp_path / "sp"), "--vocab-size", "380"]
    result = runner.invoke(app, [*args, "--trainer", "sentencepiece-unigram"])
    assert result.exit_code == 0, result.output
    assert Tokenizer.load(tmp_path / "sp").format == "sentencepiece"


def test_train_on_a_missing_glob_fails_with_the_glob(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "*.txt"), "--out", str(tmp_path / "tok")])
    assert result.exit_code == 2
    assert "matches no files" in result.output


def test_encode_prints_ids_as_json(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    result = runner.invoke(app, ["encode", str(tmp_path), "Grüße 你好", "--bos"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == tiny_tokenizer.encode("Grüße 你好", add_bos=True)


def test_encode_reads_lines_from_stdin(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path)
    result = runner.invoke(app, ["encode", str(tmp_path)], input="a b\nc\n")
    assert [json.loads(line) for line in result.output.splitlines()] == tiny_tokenizer.encode_batch(["a b", "c"])


def test_stats_reports_compression(tiny_tokenizer, tmp_path, inline_corpus):
    tiny_tokenizer.save(tmp_path / "tok")
    corpus = write_corpus(tmp_path, inline_corpus)
    result = runner.invoke(app, ["stats", str(tmp_path / "tok"), str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["tokens"] == len(tiny_tokenizer.encode("".join(inline_corpus)))
    assert stats["unknown_byte_rate"] == 0.0


def test_convert_to_tiktoken_only(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path / "src", formats=["hf"])
    result = runner.invoke(app, ["convert", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--to", "tiktoken"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "tiktoken_config.json",
        "tokenizer.tiktoken",
        "tokenizer_config.json",
    ]
    assert Tokenizer.load(tmp_path / "out").encode("Grüße") == tiny_tokenizer.encode("Grüße")


def test_convert_refuses_a_format_the_vocabulary_cannot_take(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save(tmp_path / "src")
    result = runner.invoke(
        app, ["convert", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--to", "sentencepiece"]
    )
    assert result.exit_code == 2
    assert "cannot be saved as sentencepiece" in result.output
