"""Triton stage: a model repository Triton loads as-is (Python backend running our runtime) and a client."""
