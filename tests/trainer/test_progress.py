"""`LLMP_PROGRESS_EVERY_S`, read by every progress display and live status: a bad value is named, not a float()
traceback or a display that never prints."""

from __future__ import annotations

import pytest

from llm_platform.trainer.progress import progress_every_s


def test_the_interval_comes_from_the_environment_with_a_default(monkeypatch):
    monkeypatch.delenv("LLMP_PROGRESS_EVERY_S", raising=False)
    assert progress_every_s() == 10.0
    monkeypatch.setenv("LLMP_PROGRESS_EVERY_S", "0.5")
    assert progress_every_s() == 0.5


@pytest.mark.parametrize("value", ["ten", "nan", "-1"])
def test_a_bad_interval_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("LLMP_PROGRESS_EVERY_S", value)
    with pytest.raises(ValueError, match=rf"^LLMP_PROGRESS_EVERY_S: '{value}' is not a number of seconds >= 0"):
        progress_every_s()
