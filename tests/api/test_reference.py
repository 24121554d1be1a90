from pathlib import Path

from llm_platform.api.reference import reference_markdown

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_field_reference_is_in_sync_with_the_models():
    assert REFERENCE.read_text() == reference_markdown() + "\n", "docs/reference.md drifted: run `make docs`"


def test_reference_documents_every_stage_section():
    text = reference_markdown()
    for section in ("DataSpec", "TokenizerSpec", "TrainSpec", "FinetuneSpec", "AlignSpec", "EvalSpec", "ServeSpec"):
        assert f"({section})" in text
