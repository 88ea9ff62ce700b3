"""Contracts every stage shares: engine I/O, schedule and presets, tokenization, RoPE tables, errors.

Pure Python + numpy (and the ``tokenizers`` library): importable by a serving image without PyTorch.
"""
