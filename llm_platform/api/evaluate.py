"""The `eval` stage: metrics on held-out data, benchmarks, and sample generations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from .base import SpecModel
from .fields import ReadPath


def _no_dots(name: str) -> str:
    if ".." in name:
        raise ValueError("a task name cannot contain '..'")
    return name


# lm-eval task names (mmlu_college_biology, lm-eval:arc_easy, bbh_cot_fewshot_...): never a path, since offline tasks
# turn their name into a file name under data_dir
TaskName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,199}$"), AfterValidator(_no_dots)]


class GenerateSpec(SpecModel):
    prompts: list[str] = Field(min_length=1, max_length=1000)
    max_new_tokens: int = Field(64, ge=1, le=32768)
    temperature: float = Field(0.8, ge=0, le=100, description="0 means greedy decoding.")
    top_k: int | None = Field(50, ge=1, le=2**31 - 1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class EvalSpec(SpecModel):
    metrics: list[Literal["perplexity"]] = Field(default_factory=lambda: ["perplexity"])
    tasks: list[TaskName] = Field(
        default_factory=list,
        max_length=1000,
        description="lm-eval task names. mmlu, mmlu_<subject> and hellaswag are offline tasks over the files in "
        "`data_dir`; any other name (or `lm-eval:<name>`) is lm-eval's own task, downloaded from the Hugging Face hub.",
    )
    data_dir: ReadPath | None = Field(
        None, description="Folder holding the offline benchmark files: mmlu/{dev,test}/*.csv, hellaswag/*.txt.bz2."
    )
    num_fewshot: int | None = Field(
        None, ge=0, le=1000, description="Few-shot examples per prompt; default: each task's own."
    )
    limit: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Examples per task (or validation batches) at most."
    )
    batch_size: int = Field(8, ge=1, le=65536)
    seq_len: int | None = Field(
        None, ge=8, le=1_048_576, description="Context for perplexity; default is the model's training length."
    )
    generate: GenerateSpec | None = None
