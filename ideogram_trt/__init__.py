"""ideogram-trt: deploy Ideogram 4 on NVIDIA GPUs with TensorRT.

Stages (one folder each, data flows one way): ``model`` (checkpoints, PyTorch modules) → ``export`` (ONNX with
FP8 Q/DQ) → ``engines`` (plans + manifest) → ``runtime`` (sampling loop) → ``triton``. ``core`` holds the
contracts they share and depends on numpy only.
"""

__version__ = "0.1.0"
