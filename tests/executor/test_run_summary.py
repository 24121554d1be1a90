"""What `llmp run` prints at the end: pure rows and artifact lists from outcomes and manifests."""

from __future__ import annotations

from llm_platform.run_summary import artifacts, highlights
from llm_platform.storage import Manifest


def test_a_training_row_shows_the_loss_falling_then_its_headline_metrics():
    metrics = {"loss_start": 7.6421, "loss_end": 3.1, "val_loss": 3.25, "reward_accuracy": 0.75, "steps": 40}
    assert highlights(metrics) == "loss=7.642→3.1, val_loss=3.25, reward_accuracy=0.75"
    assert highlights({"perplexity": 21.5, "stdlib_functions_acc": 0.61}) == (
        "perplexity=21.5, stdlib_functions_acc=0.61"
    )
    assert highlights({"steps": 3}) == ""  # nothing to show: the row falls back to the reason


def test_artifacts_are_each_top_folder_then_each_picture_of_the_committed_version():
    files = {name: {} for name in ("model/config.json", "model/loss_curve.png", "adapter/adapter_config.json", "x.txt")}
    manifest = Manifest(key="sft", version="v1", created="", files=files, meta={})
    assert artifacts("sft", manifest) == [
        ("adapter/", "sft/versions/v1/adapter"),
        ("model/", "sft/versions/v1/model"),
        ("model/loss_curve.png", "sft/versions/v1/model/loss_curve.png"),
    ]


def test_the_summary_lists_each_committed_folder_as_a_whole_path_to_open(tmp_path):
    import io

    from rich.console import Console

    from llm_platform.executor import StageOutcome
    from llm_platform.run_summary import print_summary
    from llm_platform.storage import ArtifactStore

    (tmp_path / "out" / "model").mkdir(parents=True)
    (tmp_path / "out" / "model" / "config.json").write_text("{}")
    store = ArtifactStore.open(str(tmp_path / "store"))
    manifest = store.commit("pretrain", tmp_path / "out")
    out = io.StringIO()
    outcomes = [StageOutcome("pretrain", "pretrain", "Succeeded", 1.0), StageOutcome("eval", "eval", "Skipped")]
    print_summary(Console(file=out, width=300), outcomes, store)
    model = tmp_path / "store" / "pretrain" / "versions" / manifest.version / "model"
    assert out.getvalue().split("Artifacts\n", 1)[1].split() == ["pretrain", "model/", str(model)]


def test_a_models_answer_with_brackets_is_shown_as_text_in_the_summary():
    import io

    from rich.console import Console

    from llm_platform.executor import StageOutcome
    from llm_platform.run_summary import summary_table

    answer = "use sorted(xs) [/end] or [bold]xs.sort()[/bold]"
    out = io.StringIO()
    Console(file=out, width=300).print(
        summary_table([StageOutcome("chat", "eval", "Succeeded", 1.0, metrics={"answer": answer})])
    )
    assert f"answer={answer}" in out.getvalue()
