"""Learning-rate schedules as pure functions of the step, so a resumed run needs no scheduler state to continue.

Every schedule warms up linearly from lr/warmup to lr over `warmup` steps, then:
- cosine: half a cosine from lr down to lr * min_ratio at `total` steps;
- linear: a straight line down to lr * min_ratio;
- wsd (warmup-stable-decay): flat at lr, then a linear decay over the last `decay_fraction` of the steps;
- constant: flat at lr.
"""

from __future__ import annotations

import math


def learning_rate(
    step: int,
    *,
    lr: float,
    total: int,
    warmup: int = 0,
    schedule: str = "cosine",
    min_ratio: float = 0.1,
    decay_fraction: float = 0.2,
) -> float:
    """The learning rate for optimizer step `step` (0-based) of `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    floor = lr * min_ratio
    if schedule == "constant":
        return lr
    if schedule == "wsd":
        decay_steps = max(1, round(total * decay_fraction))
        decay_start = max(warmup, total - decay_steps)
        if step < decay_start:
            return lr
        progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
        return lr - (lr - floor) * progress
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return lr - (lr - floor) * progress
    if schedule == "cosine":
        return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"train.schedule: unknown schedule {schedule!r}; choose cosine, linear, wsd or constant")
