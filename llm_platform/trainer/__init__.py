"""The ML library: model, tokenizer, data, training, fine-tuning, evaluation, inference, and the stage runners.

Usable on its own, without the API or the operator. Importing this package imports nothing heavy.
"""
