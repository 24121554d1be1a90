"""The `align` stage: DPO on preference pairs, starting from a model (an earlier stage or `spec.model.from`), the
whole model or LoRA adapters, through the same engine as the other training stages.

The starting model is the frozen reference: its log-probabilities of every pair are computed once, before training
(so one model is held in memory and the reference cannot drift). Writes `model/` (HF format, adapters merged, with
the tokenizer and the training log; `val_loss` there is the DPO loss on the held-out pairs) and, with adapters,
`adapter/` in PEFT format.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from llm_platform.trainer.data.preference import PreferenceLoader, attach_reference, collate_pairs, load_preference_data
from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.dpo import DPOLoss, reference_logps

from .context import StageContext
from .tuning import Tuning, default_settings, lora_config, pad_id, tune

# the learning rate when the stage has no `train` section: DPO moves a model far with a small one
DPO_LR = 5e-7


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.align
    base_dir = ctx.input("model")
    tokenizer = Tokenizer.load(base_dir)
    model = load_pretrained(base_dir)
    settings = ctx.stage.train or default_settings(DPO_LR, model.config.max_seq_len)
    data = load_preference_data(
        tokenizer,
        spec.dataset.path,
        max_len=settings.seq_len,
        prompt_field=spec.dataset.prompt_field,
        chosen_field=spec.dataset.chosen_field,
        rejected_field=spec.dataset.rejected_field,
        max_examples=spec.dataset.max_examples,
        val_fraction=spec.val_fraction,
    )

    def with_reference(model: nn.Module, env: DistEnv) -> None:
        pairs = data.train + data.val
        attach_reference(pairs, lambda ids, labels: reference_logps(model, ids, labels), pad_id(tokenizer),
                         settings.micro_batch, env.device)  # fmt: skip

    tuning = Tuning(
        name=f"align ({spec.method})",
        train=data.train,
        val=data.val,
        objective=lambda model, config: DPOLoss(model, spec.beta),  # noqa: ARG005  # tune() objective(model, config)
        adapters=None if spec.lora is None else lora_config(spec.lora),
        epochs=spec.epochs,
        loader=PreferenceLoader,
        collate=collate_pairs,
        prepare=with_reference,
    )
    return {**data.summary(), **tune(ctx, out, model, tokenizer, settings, tuning)}
