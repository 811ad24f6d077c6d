"""Scoring engines (transformers, vLLM) behind one protocol, and the device rules they share."""
