"""pass@k: the chance that at least one of k samples passes, estimated without bias from n >= k samples of which c
passed (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

The estimator is 1 - C(n-c, k) / C(n, k); it is computed as a product of ratios, 1 - prod_{i=n-c+1}^{n} (1 - k/i),
because the binomials overflow floats for the n of a real run (n=200 gives C(200, 100) ~ 1e58, and more with n).
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a passing sample
    failing_all = 1.0
    for i in range(n - c + 1, n + 1):
        failing_all *= 1.0 - k / i
    return 1.0 - failing_all


def mean_pass_at_k(samples: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (samples drawn, samples passed)."""
    if not samples:
        raise ValueError("pass@k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in samples) / len(samples)
