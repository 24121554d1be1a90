"""Our `Transformer` behind lm-eval's `LM` interface, so any lm-eval task (ours or stock) can score it.

    lm = PlatformLM.from_pretrained("out/pretrain/model")          # an HF-format folder with tokenizer files
    lm_eval.simple_evaluate(model=lm, tasks=[...])

It tokenizes the way lm-eval's `HFLM` does with `AutoTokenizer` on the same folder: lm-eval's own `TemplateLM` splits
context and continuation (trailing spaces of the context move to the continuation; the continuation's ids are what
encoding context + continuation adds after the context's ids), text is encoded with the special tokens the HF
tokenizer adds by default (BOS for Llama-style tokenizers), an empty context is conditioned on BOS (else EOS), and
rolling log-likelihoods use lm-eval's own window split over the model's context length. So a checkpoint scores the
same here as through transformers (tests/trainer/eval/test_lm_eval_parity.py holds the two side by side).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from llm_platform.trainer.model.hf import load_pretrained
from llm_platform.trainer.tokenizer import Tokenizer

from .generation import Decoding, generate_batch
from .scoring import score_continuations
from .task_names import LM_EVAL_MISSING

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import normalize_gen_kwargs
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window, simple_parse_args_string
except ImportError as error:  # the `eval` extra is optional
    raise ImportError(LM_EVAL_MISSING) from error

DECODING_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_k", "top_p"}


def hf_adds_bos(model_dir: str | Path, tokenizer: Tokenizer) -> bool:
    """Whether `AutoTokenizer` on `model_dir` prepends BOS when encoding text (what HFLM's likelihoods condition on).

    Read from `tokenizer_config.json`'s `add_bos_token`, else from what tokenizer.json's post-processor does, else BOS
    whenever the vocabulary has one (SentencePiece Llama tokenizers)."""
    if tokenizer.bos_id is None:
        return False
    folder = Path(model_dir)
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if "add_bos_token" in config:
            return bool(config["add_bos_token"])
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as HFTokenizer

        ids = HFTokenizer.from_file(str(folder / "tokenizer.json")).encode("a").ids
        return bool(ids) and ids[0] == tokenizer.bos_id
    return True


@register_model("llmp")
class PlatformLM(TemplateLM):
    """lm-eval `LM` over a `Transformer` and our `Tokenizer`.

    add_bos: prepend BOS when encoding text (None: when the tokenizer has one; `from_pretrained` reads what the folder's
    HF tokenizer does). max_length: context for scoring (None: the model's `max_seq_len`). max_gen_toks: new tokens
    where a task names no limit; gen_toks_limit: at most this many new tokens whatever a task asks (chain-of-thought
    tasks ask for 1024-2048, more than a small model's whole context).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        add_bos: bool | None = None,
        max_gen_toks: int = 256,
        gen_toks_limit: int | None = None,
    ):
        super().__init__()
        if tokenizer.eos_id is None and tokenizer.bos_id is None:
            raise ValueError(
                "the tokenizer has neither a bos nor an eos token; lm-eval conditions empty contexts on one"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or model.config.max_seq_len
        self.add_bos = tokenizer.bos_id is not None if add_bos is None else add_bos
        self.max_gen_toks = max_gen_toks
        self.gen_toks_limit = gen_toks_limit

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, **options
    ) -> PlatformLM:
        tokenizer = Tokenizer.load(model_dir)
        options.setdefault("add_bos", hf_adds_bos(model_dir, tokenizer))
        return cls(load_pretrained(model_dir, device=device, dtype=dtype), tokenizer, **options)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> PlatformLM:
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> PlatformLM:
        """`--model llmp --model_args path=DIR[,dtype=bfloat16,max_length=N,gen_toks_limit=N]` on lm-eval's command
        line (with `--device` and `--batch_size`), or the same keys to `simple_evaluate(model="llmp", ...)`."""
        args = dict(arg_dict)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        path = args.pop("path", None) or args.pop("pretrained", None)
        if not path:
            raise ValueError("--model_args needs path=<folder of an HF-format checkpoint with tokenizer files>")
        dtype = args.pop("dtype", None)
        options = {key: int(args.pop(key)) for key in ("max_length", "gen_toks_limit", "max_gen_toks") if key in args}
        if args:
            raise ValueError(f"unknown --model_args {sorted(args)}; use path, dtype, max_length, gen_toks_limit")
        batch_size = str(extra.get("batch_size", 8))
        device = extra.get("device") or "cuda"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # lm-eval's command line asks for cuda unless told otherwise, as HFLM falls back
        return cls.from_pretrained(
            path,
            device=device,
            dtype=getattr(torch, dtype) if dtype else None,
            batch_size=int(batch_size) if batch_size.isdigit() else 8,
            **options,
        )

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id if self.tokenizer.eos_id is not None else self.tokenizer.bos_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tokenizer_name(self) -> str:
        """What lm-eval keys its request cache by when prompts go through a chat template."""
        return f"llmp-{self.tokenizer.vocab_size}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:  # noqa: ARG002  # lm_eval LM.chat_template signature
        return self.tokenizer.chat_template or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The messages of a (few-shot) prompt as the tokenizer's chat template renders them, for
        `eval.apply_chat_template`; a tokenizer without a template is an error that says so."""
        return self.tokenizer.render_chat(chat_history, add_generation_prompt=add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """Ids as the HF tokenizer gives them: special-token text becomes its id, and BOS is prepended unless told
        otherwise or the text already starts with it."""
        bos = self.tokenizer.bos_id
        starts_with_bos = bos is not None and string.startswith(self.tokenizer.id_to_token(bos))
        add_bos = (
            self.add_bos and add_special_tokens is not False and not (add_special_tokens is None and starts_with_bos)
        )
        return self.tokenizer.encode(string, add_bos=add_bos, allow_special=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:  # noqa: ARG002  # lm_eval LM signature
        for strings, _, continuation in requests:
            if len(continuation) > self.max_length:
                text = strings[1][:40] if strings else ""
                raise ValueError(
                    f"a continuation of {len(continuation)} tokens ({text!r}...) does not fit the "
                    f"{self.max_length}-token context; evaluate a model with a longer max_seq_len on this task"
                )
        pairs = [(context, continuation) for _, context, continuation in requests]
        results = score_continuations(self.model, pairs, self.max_length, self.batch_size)
        for (strings, _, _), answer in zip(requests, results, strict=True):
            if strings is not None:
                self.cache_hook.add_partial("loglikelihood", strings, answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:  # noqa: ARG002  # lm_eval LM signature
        """Log-likelihood of whole texts: disjoint windows of up to `max_length` scored tokens, each conditioned on
        the tokens before it in the window (the first on the prefix token)."""
        pairs, owner = [], []
        for i, (text,) in enumerate(request.args for request in requests):
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for window in map(make_disjoint_window, windows):
                pairs.append(window)
                owner.append(i)
        totals = [0.0] * len(requests)
        scores = score_continuations(self.model, pairs, self.max_length, self.batch_size)
        for i, (logprob, _) in zip(owner, scores, strict=True):
            totals[i] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def decoding(self, gen_kwargs: dict) -> Decoding:
        """lm-eval's generation settings (`until`, `max_gen_toks` and its aliases, `do_sample`, `temperature`,
        `top_k`, `top_p`) as our `Decoding`; any other setting is an error rather than silently ignored."""
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        unknown = sorted(set(kwargs) - DECODING_KEYS)
        if unknown:
            raise ValueError(f"generation settings {unknown} are not supported; use {sorted(DECODING_KEYS)}")
        until = kwargs.get("until") or []
        limit = self.gen_toks_limit or kwargs["max_gen_toks"]
        return Decoding(
            max_new_tokens=min(kwargs["max_gen_toks"], limit),
            stops=tuple([until] if isinstance(until, str) else until),
            do_sample=bool(kwargs.get("do_sample")),
            temperature=float(kwargs.get("temperature") or 0.0),
            top_k=kwargs.get("top_k"),
            top_p=kwargs.get("top_p"),
        )

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:  # noqa: ARG002  # lm_eval LM signature
        """All prompts at once through the engine, each cut on the left to leave room for `max_gen_toks`. Sampled
        requests get seeds 0, 1, 2, ... in order, so the repeats of one prompt (pass@k's n samples) differ,
        reproducibly."""
        prompts, decodings = [], []
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            decoding = self.decoding(gen_kwargs)
            if not decoding.greedy:
                decoding = replace(decoding, seed=index)
            room = self.max_length - decoding.max_new_tokens
            if room < 1:
                raise ValueError(
                    f"max_gen_toks={decoding.max_new_tokens} leaves no room for a prompt in {self.max_length} tokens"
                )
            prompts.append(self.tok_encode(context)[-room:])
            decodings.append(decoding)
        outputs = generate_batch(self.model, self.tokenizer, prompts, decodings)
        for request, text in zip(requests, outputs, strict=True):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return outputs
