"""Multiple-choice accuracy (raw and per-character) and token accuracy on hand-checked cases."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.eval.metrics import choice_accuracy, choice_correct, token_accuracy


def test_length_normalisation_can_change_the_winner():
    # a long choice with a lower total but a higher per-character log-likelihood
    marks = choice_correct([-4.0, -6.0], ["no", "a much longer answer"], gold=1)
    assert marks == {"acc": False, "acc_norm": True}


def test_accuracy_over_questions():
    result = choice_accuracy([[-1.0, -2.0], [-3.0, -1.0], [-1.0, -1.0]], [["a", "b"]] * 3, [0, 0, 1])
    assert result == {"acc": pytest.approx(1 / 3), "acc_norm": pytest.approx(1 / 3)}  # a tie goes to the first


def test_a_gold_index_outside_the_choices_is_refused():
    with pytest.raises(ValueError, match="gold index 2 is outside the 2 choices"):
        choice_correct([-1.0, -2.0], ["a", "b"], 2)


def test_token_accuracy_skips_ignored_positions():
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [0.0, 5.0]]])
    targets = torch.tensor([[1, 1, -100]])
    assert token_accuracy(logits, targets) == (1, 2)


def test_token_accuracy_shapes_must_match():
    with pytest.raises(ValueError, match="do not match targets"):
        token_accuracy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
