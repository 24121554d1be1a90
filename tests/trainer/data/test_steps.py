import pytest

from llm_platform.trainer.data.document import Document, Drop
from llm_platform.trainer.data.steps import CheckFilter, Pipeline, StepStats


def _docs(*texts):
    return [Document(id=str(i), text=t, source="test") for i, t in enumerate(texts)]


class Upper:
    name = "upper"

    def __call__(self, doc):
        return doc.with_text(doc.text.upper())


def test_pipeline_counts_kept_dropped_and_changed_per_step():
    short = CheckFilter("short", lambda text: "too_short" if len(text) < 4 else None)
    pipeline = Pipeline([short, Upper()])
    kept = pipeline.process_batch(_docs("abc", "hello", "HEY!"))
    assert [d.text for d in kept] == ["HELLO", "HEY!"]
    stats = pipeline.stats
    assert (stats["short"].seen, stats["short"].kept, dict(stats["short"].dropped)) == (3, 2, {"too_short": 1})
    assert (stats["upper"].seen, stats["upper"].kept, stats["upper"].changed) == (2, 2, 1)
    assert stats["short"].examples["too_short"] == [{"id": "0", "excerpt": "abc"}]


def test_stats_merge_and_round_trip_through_dict():
    a, b = StepStats(), StepStats()
    doc = Document("x", "text", "s")
    a.record(doc, doc)
    b.record(doc, Drop("bad"))
    merged = a
    merged.merge(b)
    assert (merged.seen, merged.kept, dict(merged.dropped)) == (2, 1, {"bad": 1})
    assert StepStats.from_dict(merged.to_dict()).to_dict() == merged.to_dict()


def test_run_streams_in_batches_and_take_stats_resets():
    pipeline = Pipeline([Upper()])
    out = list(pipeline.run(_docs(*"abcdefg"), batch_size=3))
    assert [d.text for d in out] == list("ABCDEFG")
    assert pipeline.take_stats()["upper"].seen == 7
    assert pipeline.stats["upper"].seen == 0


def test_step_names_must_be_distinct():
    with pytest.raises(ValueError, match="repeated: upper"):
        Pipeline([Upper(), Upper()])
