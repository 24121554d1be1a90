"""pass@k equals its closed form 1 - C(n-c, k) / C(n, k), and stays finite where the binomials overflow floats."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from llm_platform.trainer.eval.metrics import mean_pass_at_k, pass_at_k

CASES = [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (10, 7, 5), (20, 1, 10), (50, 25, 10), (100, 13, 100)]


@pytest.mark.parametrize(("n", "c", "k"), CASES)
def test_equals_the_closed_form(n, c, k):
    closed = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(closed), abs=1e-12)


def test_pass_at_1_is_the_pass_rate():
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)


def test_large_n_where_binomials_overflow_floats():
    n, c, k = 2000, 3, 1000
    with pytest.raises(OverflowError):
        float(comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(1 - Fraction(comb(n - c, k), comb(n, k))), abs=1e-12)


def test_mean_over_problems():
    assert mean_pass_at_k([(10, 0), (10, 10)], 5) == 0.5


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 6), (5, 2, 0)])
def test_impossible_counts_are_refused(n, c, k):
    with pytest.raises(ValueError, match="0 <= c <= n and 1 <= k <= n"):
        pass_at_k(n, c, k)
