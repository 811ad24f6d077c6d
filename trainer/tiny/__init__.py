"""Tiny random Qwen3 models and tokenizers (tests, smoke runs) and Qwen3's real tokenizer offline."""
