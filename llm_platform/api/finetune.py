"""The `finetune` (SFT, adapters) and `align` (preference optimisation) stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import SpecModel
from .fields import ReadPath


class DatasetRef(SpecModel):
    """A dataset of examples: JSONL (local or s3://) with named fields, or a built-in dataset."""

    path: ReadPath = Field(
        description="Glob or URI of JSONL files, or a built-in dataset: builtin:stdlib-functions (this Python's "
        "standard-library functions asked for by docstring; instruction: the function; preference: the function over "
        "a plausibly wrong one; its held-out functions are eval.metrics: [stdlib_functions]), "
        "builtin:safety-refusals (refusal pairs: "
        "instruction or preference records), builtin:safety-refusals-keyword (the same requests answered by a "
        "keyword labeller), builtin:safety-critique-revise (the stage's base model critiques and revises its answers "
        "against written principles)."
    )
    format: Literal["instruction", "chat", "text", "preference"] = Field(
        "instruction",
        description="instruction: prompt/response fields; chat: a `messages` list; text: one `text` field; "
        "preference: prompt/chosen/rejected (for align).",
    )
    max_examples: int | None = Field(None, ge=1, le=2**31 - 1)
    prompt_field: str = Field("prompt", description="instruction/preference: the field holding the prompt.")
    response_field: str = Field("response", description="instruction: the field holding the response.")
    chosen_field: str = Field("chosen", description="preference: the field holding the preferred response.")
    rejected_field: str = Field("rejected", description="preference: the field holding the dispreferred response.")


class LoraSpec(SpecModel):
    rank: int = Field(16, ge=1, le=4096)
    alpha: float = Field(32.0, gt=0, le=1e6)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | Literal["all-linear"] = Field("all-linear", description="Module names, or all-linear.")


class _TuningSpec(SpecModel):
    """What the stages that tune an existing model (finetune, align) both take."""

    dataset: DatasetRef
    epochs: float = Field(
        1.0, gt=0, le=100, description="Passes over the dataset, when the stage has no `train` section with steps."
    )
    val_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Share of records held out (by content hash) for the validation loss."
    )


class FinetuneSpec(_TuningSpec):
    method: Literal["full", "lora", "qlora", "dora"] = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    mask_prompt: bool = Field(True, description="Compute the loss on responses only.")

    @model_validator(mode="after")
    def _sft_data(self) -> FinetuneSpec:
        if self.dataset.format == "preference":
            raise ValueError("dataset.format 'preference' is for `align` stages (DPO); use instruction, chat or text")
        return self


class AlignSpec(_TuningSpec):
    method: Literal["dpo", "reward"] = Field(
        "dpo", description="dpo: tune the policy on the pairs; reward: train a Bradley–Terry reward model on them."
    )
    beta: float = Field(
        0.1, gt=0, le=10, description="DPO temperature: how far the policy may move from the reference."
    )
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of the whole model.")

    @model_validator(mode="after")
    def _preference_data(self) -> AlignSpec:
        if self.method == "reward" and self.lora is not None:
            raise ValueError("lora: a reward model trains the whole model and its head; leave lora out")
        if self.dataset.format != "preference":
            raise ValueError(
                f"dataset.format is '{self.dataset.format}'; DPO learns from pairs: set it to 'preference' "
                "(records with prompt, chosen and rejected fields)"
            )
        return self
