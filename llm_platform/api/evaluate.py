"""The `eval` stage: metrics on held-out data, benchmarks, and sample generations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

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


class RefusalsSpec(SpecModel):
    """Refusal rates of greedy answers to harmful requests (higher is safer) and to benign look-alikes (lower is more
    helpful), a refusal being an answer with a refusal phrase, matched as the content filter matches its blocklist."""

    requests: ReadPath = Field(
        "builtin:safety-refusals",
        description="JSONL of {prompt, kind: harmful or benign}, or builtin:safety-refusals (the held-out requests "
        "of the refusal pairs, worded in ways their training records are not).",
    )
    max_tokens: int = Field(32, ge=1, le=4096, description="New tokens per answer.")


class EvalSpec(SpecModel):
    metrics: list[Literal["perplexity", "stdlib_functions"]] = Field(
        default_factory=lambda: ["perplexity"],
        description="perplexity: on the data stage's held-out split; stdlib_functions: pair accuracy on held-out "
        "standard-library functions (the real one over a plausibly wrong one, by likelihood; chance 0.5), no files "
        "needed.",
    )
    tasks: list[TaskName] = Field(
        default_factory=list,
        max_length=1000,
        description="lm-eval task names. Offline tasks over the files in `data_dir`: mmlu (and mmlu_<subject>), "
        "mmlu_pro (and mmlu_pro_<category>), hellaswag, truthfulqa_mc1, truthfulqa_mc2, truthfulqa_gen, gsm8k, "
        "gsm8k_cot, bbh_cot_fewshot (and bbh_cot_fewshot_<task>), humaneval, humaneval_sampled (pass@1/pass@10; "
        "generated code runs in a sandbox), squad, flores200_<src>-<tgt> (e.g. flores200_eng-deu), summarization, bbq, "
        "bfcl_simple (tool use), redteam (toxic completions of red-team prompts). "
        "Any other name (or `lm-eval:<name>`) is lm-eval's own task, downloaded from the Hugging Face hub.",
    )
    data_dir: ReadPath | None = Field(
        None,
        description="Folder (or s3:// prefix) holding the offline benchmark files in their published formats: "
        "mmlu/{dev,test}/*.csv, hellaswag/hellaswag_val_full.txt.bz2, truthfulqa/{mc_task.json,TruthfulQA.csv}, "
        "gsm8k/*.jsonl, "
        "bbh/bbh/*.json, humaneval/HumanEval.jsonl.gz, squad_v1.1/dev-v1.1.json, flores200/{dev,devtest}/*, "
        "mmlu_pro/{test,validation}.jsonl, bbq/data/*.jsonl, summarization/test.jsonl, "
        "bfcl/{,possible_answer/}BFCL_v3_simple.json, redteam/prompts.jsonl.",
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
    max_gen_toks: int | None = Field(
        None, ge=1, le=32768, description="At most this many new tokens per generated answer, whatever a task asks."
    )
    apply_chat_template: bool = Field(False, description="Wrap benchmark prompts in the tokenizer's chat template.")
    fewshot_as_multiturn: bool = Field(
        False, description="With apply_chat_template: few-shot examples as earlier turns of the conversation."
    )
    baselines: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        max_length=16,
        description="Reference numbers to report beside this model's, by baseline name: "
        "{name: {metric: value}}, metric names as the stage reports them (e.g. mmlu_acc).",
    )
    generate: GenerateSpec | None = None
    refusals: RefusalsSpec | None = Field(None, description="Also measure refusal rates (safety tuning).")

    @model_validator(mode="after")
    def _checked(self) -> EvalSpec:
        if self.fewshot_as_multiturn and not self.apply_chat_template:
            raise ValueError("eval.fewshot_as_multiturn needs eval.apply_chat_template: true")
        for name, numbers in self.baselines.items():
            if not name or len(numbers) > 256 or not all(numbers):
                raise ValueError(
                    f"eval.baselines.{name or '<empty>'}: a named baseline with 1-256 metrics, e.g. {{mmlu_acc: 0.45}}"
                )
        return self
