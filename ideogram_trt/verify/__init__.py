"""``ideogram-trt verify``: an engine set against the PyTorch reference on this machine (docs/VERIFY.md)."""
