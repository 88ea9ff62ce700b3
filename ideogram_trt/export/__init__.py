"""Export stage: PyTorch modules → ONNX graphs with explicit FP8 Q/DQ, calibration, and our ONNX lint."""
