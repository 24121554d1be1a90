"""The `align` stage: DPO on preference pairs, starting from a model (an earlier stage or `spec.model.from`), the
whole model or LoRA adapters, through the same engine as the other training stages; or, with `method: reward`, a
Bradley–Terry reward model trained on the same pairs (`model/` then also holds `reward_head.safetensors`, and the
metrics the held-out pair accuracy `val_accuracy`; `train.reward.load_reward_model(model/)` scores with it).

The starting model is the frozen reference: its log-probabilities of every pair are computed once, before training
(so one model is held in memory and the reference cannot drift). Writes `model/` (HF format, adapters merged, with
the tokenizer, the training log with DPO's rewards under TRL's names (`rewards/chosen`, `rewards/rejected`,
`rewards/accuracies`, `rewards/margins`, and `val_rewards/...` on the held-out pairs) and `loss_curve.png`; `val_loss`
there is the DPO loss on the held-out pairs) and, with adapters, `adapter/` in PEFT format. The stage's metrics add
`reward_accuracy` and `reward_margin` (last logged steps) and `val_reward_accuracy`, `val_reward_margin`.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from llm_platform.trainer.data.builtin import dataset_file
from llm_platform.trainer.data.preference import PreferenceLoader, attach_reference, collate_pairs, load_preference_data
from llm_platform.trainer.data.sft import validation_batches
from llm_platform.trainer.model.hf import load_pretrained, save_pretrained
from llm_platform.trainer.tokenizer import Tokenizer
from llm_platform.trainer.train.distributed import DistEnv
from llm_platform.trainer.train.dpo import DPOLoss, reference_logps
from llm_platform.trainer.train.reward import RewardLoss, RewardModel, pair_accuracy, save_reward_head

from .context import StageContext
from .tuning import Tuning, default_settings, lora_config, pad_id, tune

# the learning rate when the stage has no `train` section: DPO moves a model far with a small one
DPO_LR = 5e-7
REWARD_LR = 1e-5


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.align
    base_dir = ctx.input("model")
    tokenizer = Tokenizer.load(base_dir)
    model = load_pretrained(base_dir, overrides=ctx.model_overrides())
    settings = ctx.stage.train or default_settings(REWARD_LR if spec.method == "reward" else DPO_LR,
                                                   model.config.max_seq_len)  # fmt: skip
    data = load_preference_data(
        tokenizer,
        dataset_file(spec.dataset.path, "preference", out / "dataset", base_dir),
        max_len=settings.seq_len,
        prompt_field=spec.dataset.prompt_field,
        chosen_field=spec.dataset.chosen_field,
        rejected_field=spec.dataset.rejected_field,
        max_examples=spec.dataset.max_examples,
        val_fraction=spec.val_fraction,
    )

    if spec.method == "reward":
        return {**data.summary(), **train_reward_model(ctx, out, model, tokenizer, settings, data, spec.epochs)}

    def with_reference(model: nn.Module, env: DistEnv) -> None:
        pairs = data.train + data.val
        attach_reference(pairs, lambda ids, labels: reference_logps(model, ids, labels), pad_id(tokenizer),
                         settings.micro_batch, env.device)  # fmt: skip

    rewards = RewardLog()

    def objective(model: nn.Module, _config) -> DPOLoss:
        rewards.loss = DPOLoss(model, spec.beta)
        return rewards.loss

    tuning = Tuning(
        name=f"align ({spec.method})",
        train=data.train,
        val=data.val,
        objective=objective,
        adapters=None if spec.lora is None else lora_config(spec.lora),
        epochs=spec.epochs,
        loader=PreferenceLoader,
        collate=collate_pairs,
        prepare=with_reference,
        annotate=rewards.take,
    )
    metrics = tune(ctx, out, model, tokenizer, settings, tuning)
    return {**data.summary(), **metrics, **rewards.headline()}


class RewardLog:
    """DPO's rewards for each log record (since the previous one; the validation ones when the record has an
    evaluation), and the last of each as the stage's headline metrics."""

    def __init__(self) -> None:
        self.loss: DPOLoss | None = None
        self.last: dict[str, float] = {}

    def take(self) -> dict[str, float]:
        if self.loss is None:
            return {}
        values = {key: round(v, 5) for key, v in self.loss.take_rewards("train").items()}
        values |= {f"val_{key}": round(v, 5) for key, v in self.loss.take_rewards("val").items()}
        self.last |= values
        return values

    def headline(self) -> dict[str, float]:
        """reward_accuracy and reward_margin of the last logged steps, and of the held-out pairs (val_...)."""
        names = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin"}
        out = {}
        for key, name in names.items():
            for prefix in ("", "val_"):
                if f"{prefix}{key}" in self.last:
                    out[f"{prefix}{name}"] = round(self.last[f"{prefix}{key}"], 4)
        return out


def train_reward_model(ctx: StageContext, out: Path, model: nn.Module, tokenizer, settings, data, epochs) -> dict:
    """The whole model plus a zero-initialised head, trained on the pairs; `val_accuracy` on the held-out ones."""
    reward = RewardModel(model)

    def write(trained: nn.Module, folder: Path) -> None:
        save_pretrained(trained.decoder, folder)
        save_reward_head(trained, folder)

    tuning = Tuning(
        name="align (reward)",
        train=data.train,
        val=data.val,
        objective=lambda model, _config: RewardLoss(model),
        adapters=None,
        epochs=epochs,
        loader=PreferenceLoader,
        collate=collate_pairs,
        write_model=write,
    )
    metrics = tune(ctx, out, reward, tokenizer, settings, tuning)
    if data.val:
        device = next(reward.parameters()).device
        held_out = validation_batches(data.val, 8, pad_id(tokenizer), 0, 1, device, collate_pairs)
        metrics["val_accuracy"] = pair_accuracy(reward, held_out)
    return metrics
