"""ONNX Runtime helpers for the export tests: run a graph, and replay its FP8 rounding decisions.

Why replay: the fp8 recipe rounds activations to E4M3. ONNX Runtime (fp32) and the float64 PyTorch reference
compute each quantizer's input with different summation orders, so now and then an input sits on a rounding
boundary and the two pick neighbouring codes; one such flip moves the output by up to 1e-3. The replay runs the
reference with ONNX Runtime's quantized activations substituted at each Q/DQ (in execution order) and checks
that every disagreement is exactly such a tie: adjacent codes, input within a hair of the midpoint. Then the
outputs must agree to 1e-5 like any other graph.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ideogram_trt.export import quant_modules
from ideogram_trt.export.qdq import FP8_MAX


def session(path: Path, extra_outputs: list[str] | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if os.environ.get("PYTEST_XDIST_WORKER"):
        options.intra_op_num_threads = 1  # one core per xdist worker
    if not extra_outputs:
        return ort.InferenceSession(str(path), options)
    model = onnx.load(str(path))
    for name in extra_outputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as handle:
        onnx.save(model, handle.name)
    return ort.InferenceSession(handle.name, options)


def feeds(graph_inputs: list[dict], tensors: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {spec["name"]: t.numpy() for spec, t in zip(graph_inputs, tensors, strict=True)}


def activation_qdq_outputs(path: Path) -> list[str]:
    """Outputs of the DequantizeLinear nodes that undo a QuantizeLinear (activations, not weights), in order."""
    model = onnx.load(str(path))
    producers = {out: node for node in model.graph.node for out in node.output}
    return [
        node.output[0]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and node.input[0] in producers
        and producers[node.input[0]].op_type == "QuantizeLinear"
    ]


def _codes(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (values.double() / scale.double()).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)


@dataclass
class Replay:
    """Stands in for ``quant_modules.fp8_qdq`` and hands out ONNX Runtime's quantized activations in order."""

    values: list[np.ndarray]
    used: int = 0
    elements: int = 0
    flips: int = 0
    problems: list[str] = field(default_factory=list)

    def __call__(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        if self.used >= len(self.values):
            self.problems.append("the reference quantizes more tensors than the graph")
            return x
        theirs = torch.from_numpy(self.values[self.used]).to(x.dtype)
        self.used += 1
        if theirs.shape != x.shape:
            self.problems.append(f"Q/DQ #{self.used}: graph shape {tuple(theirs.shape)}, reference {tuple(x.shape)}")
            return x
        own, graph = _codes(x, scale), _codes(theirs, scale)
        differ = own.view(torch.uint8) != graph.view(torch.uint8)
        self.elements += x.numel()
        if differ.any():
            self.flips += int(differ.sum())
            ratios = x.double() / scale.double()
            ratio = ratios[differ]
            a, b = own.double()[differ], graph.double()[differ]
            adjacent = (a - b).abs() <= torch.maximum(a.abs(), b.abs()) / 8 + 2.0**-9  # one E4M3 step
            # fp32 noise is relative to the tensor's scale, not to the element (small elements cancel).
            on_tie = (ratio - (a + b) / 2).abs() <= 1e-6 * float(ratios.abs().max()) + 1e-6
            if not bool((adjacent & on_tie).all()):
                self.problems.append(f"Q/DQ #{self.used}: codes differ away from a rounding tie")
        return theirs


def replayed(monkeypatch, values: list[np.ndarray]) -> Replay:
    replay = Replay(values)
    monkeypatch.setattr(quant_modules, "fp8_qdq", replay)
    return replay
