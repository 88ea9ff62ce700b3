"""Runtime stage: the sampling loop over an engine set (ONNX Runtime or TensorRT), no PyTorch, no diffusers."""

from ideogram_trt.runtime.pipeline import GenerationResult, Pipeline, Timings

__all__ = ["GenerationResult", "Pipeline", "Timings"]
