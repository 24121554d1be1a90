"""Tokenizers: byte-level BPE training, HF / tiktoken / SentencePiece files with identical ids, chat templates.

tok = train_bpe(texts, vocab_size=32_000)          # or train_bpe_from_files("corpus/**/*.txt", 32_000)
ids = tok.encode("Hello", add_bos=True)
tok.save("out/")                                     # tokenizer.json, tokenizer.tiktoken, tokenizer_config.json
tok = Tokenizer.load("out/")                         # or a .tiktoken file or a SentencePiece .model
"""

from llm_platform.trainer.tokenizer.chat import DEFAULT_CHAT_TEMPLATE, ChatTemplateError
from llm_platform.trainer.tokenizer.corpus import iter_texts
from llm_platform.trainer.tokenizer.patterns import GPT2, LLAMA3, O200K
from llm_platform.trainer.tokenizer.specials import DEFAULT_SPECIAL_TOKENS
from llm_platform.trainer.tokenizer.tokenizer import Tokenizer
from llm_platform.trainer.tokenizer.train import train_bpe, train_bpe_from_files

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "DEFAULT_SPECIAL_TOKENS",
    "GPT2",
    "LLAMA3",
    "O200K",
    "ChatTemplateError",
    "Tokenizer",
    "iter_texts",
    "train_bpe",
    "train_bpe_from_files",
]
