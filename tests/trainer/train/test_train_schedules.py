import math

import pytest

from llm_platform.trainer.train.schedules import learning_rate


def lrs(schedule, total=100, warmup=10, **kw):
    return [
        learning_rate(s, lr=1.0, total=total, warmup=warmup, schedule=schedule, min_ratio=0.1, **kw)
        for s in range(total)
    ]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "constant"])
def test_warmup_rises_linearly_to_the_peak(schedule):
    values = lrs(schedule)
    assert values[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])


def test_cosine_falls_from_peak_to_the_floor_through_the_midpoint():
    values = lrs("cosine", total=110, warmup=10)
    assert values[10] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(110, lr=1.0, total=110, warmup=10, min_ratio=0.1) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))


def test_linear_decays_in_equal_steps():
    values = lrs("linear", total=110, warmup=10)
    diffs = {round(a - b, 9) for a, b in zip(values[10:], values[11:], strict=False)}
    assert diffs == {round(0.9 / 100, 9)}


def test_wsd_holds_the_peak_then_decays_over_the_last_fraction():
    values = lrs("wsd", total=100, warmup=10, decay_fraction=0.2)
    assert values[10:80] == pytest.approx([1.0] * 70)
    assert values[80] == pytest.approx(1.0)
    assert values[99] == pytest.approx(1.0 - 0.9 * 19 / 20)
    assert learning_rate(100, lr=1.0, total=100, warmup=10, schedule="wsd", min_ratio=0.1) == pytest.approx(0.1)


def test_constant_stays_at_the_peak_after_warmup():
    assert lrs("constant")[10:] == pytest.approx([1.0] * 90)


def test_unknown_schedule_is_named_in_the_error():
    with pytest.raises(ValueError, match="train.schedule.*'step'"):
        learning_rate(50, lr=1.0, total=100, schedule="step")
