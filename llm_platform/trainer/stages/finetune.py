"""The `finetune` stage: supervised fine-tuning of a model (from an earlier stage or `spec.model.from`) on JSONL
examples, full or with LoRA / DoRA adapters (QLoRA: LoRA over the base held in NF4), through the same engine as
pretraining.

Writes `model/` (the fine-tuned model in HF format, adapters merged, with the tokenizer and the training log) and,
for adapter methods, `adapter/` (a PEFT adapter folder: `PeftModel.from_pretrained(base, adapter/)` loads it). A
QLoRA `model/` is the dequantised NF4 base with the adapters merged: the weights the adapters were trained against.
Checkpoints and resume work as in pretraining (keyed by the stage fingerprint). `model/loss_curve.png` draws the
training and validation loss. `dataset.path: builtin:stdlib-functions` trains on the standard library's documented
functions (`data.stdlib_functions`), which every machine has.
"""

from __future__ import annotations

from pathlib import Path

from llm_platform.trainer.data.builtin import dataset_file
from llm_platform.trainer.data.sft import load_sft_data
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.objective import NextTokenLoss

from .context import StageContext
from .tuning import Tuning, default_settings, lora_config, tune

# learning rates when the stage has no `train` section: the usual starting points for adapters and full fine-tuning
ADAPTER_LR, FULL_LR = 2e-4, 2e-5


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.finetune
    base_dir = ctx.input("model")
    tokenizer = Tokenizer.load(base_dir)
    model = load_pretrained(base_dir, overrides=ctx.model_overrides())
    lr = FULL_LR if spec.method == "full" else ADAPTER_LR
    settings = ctx.stage.train or default_settings(lr, model.config.max_seq_len)
    data = load_sft_data(
        tokenizer,
        dataset_file(spec.dataset.path, spec.dataset.format, out / "dataset", base_dir),
        spec.dataset.format,
        max_len=settings.seq_len,
        mask_prompt=spec.mask_prompt,
        prompt_field=spec.dataset.prompt_field,
        response_field=spec.dataset.response_field,
        max_examples=spec.dataset.max_examples,
        val_fraction=spec.val_fraction,
    )
    tuning = Tuning(
        name=f"finetune ({spec.method})",
        train=data.train,
        val=data.val,
        objective=lambda model, config: NextTokenLoss(
            model, config.z_loss, reset_positions=config.reset_positions, offload_activations=config.activation_offload
        ),
        adapters=None if spec.method == "full" else lora_config(spec.lora, dora=spec.method == "dora"),
        epochs=spec.epochs,
        quantize_base=spec.method == "qlora",
    )
    return {**data.summary(), **tune(ctx, out, model, tokenizer, settings, tuning)}
