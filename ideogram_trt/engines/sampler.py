"""The sampler engine of TensorRT sets: one step's CFG blend and Euler update on the GPU.

Written directly as a five-node ONNX graph (no PyTorch). The runtime chains dit_cond → dit_uncond → sampler on
one stream, so latents and velocities stay in device memory across the whole loop and the host synchronizes
once per image. Operation order is ``core.sampling.euler_update``'s: v = g·v_c + (1 − g)·v_u, then z + v·dt
(tests/test_sampling.py checks they agree).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ideogram_trt.core import contracts as io
from ideogram_trt.core.components import Component
from ideogram_trt.core.contracts import TensorSpec
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.files import atomic_write
from ideogram_trt.core.records import TensorEntry
from ideogram_trt.core.shapes import Sizes
from ideogram_trt.core.sidecar import ExportSidecar, graph_path

OPSET = 21


def sampler_model(channels: int) -> onnx.ModelProto:
    def tensor(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", "N", channels])

    scalar = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in (io.GUIDANCE, io.STEP)]
    one = numpy_helper.from_array(np.ones(1, dtype=np.float32), "one")
    nodes = [
        helper.make_node("Mul", [io.GUIDANCE, io.VELOCITY_COND], ["guided"], name="sampler/guided"),
        helper.make_node("Sub", ["one", io.GUIDANCE], ["rest"], name="sampler/rest"),
        helper.make_node("Mul", ["rest", io.VELOCITY_UNCOND], ["unguided"], name="sampler/unguided"),
        helper.make_node("Add", ["guided", "unguided"], ["velocity"], name="sampler/velocity"),
        helper.make_node("Mul", ["velocity", io.STEP], ["delta"], name="sampler/delta"),
        helper.make_node("Add", [io.LATENTS, "delta"], [io.LATENTS_NEXT], name="sampler/update"),
    ]
    graph = helper.make_graph(
        nodes,
        Component.SAMPLER.value,
        [tensor(io.LATENTS), tensor(io.VELOCITY_COND), tensor(io.VELOCITY_UNCOND), *scalar],
        [tensor(io.LATENTS_NEXT)],
        [one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ideogram-trt")
    onnx.checker.check_model(model, full_check=True)
    return model


def write_sampler(export_dir: Path, channels: int) -> Path:
    """Write sampler.onnx and its sidecar into an export folder (idempotent)."""
    graph = Component.SAMPLER
    path = graph_path(export_dir, graph)
    atomic_write(path, sampler_model(channels).SerializeToString(), "sampler graph")
    sizes = Sizes(channels=channels)

    def entries(specs: tuple[TensorSpec, ...]) -> list[TensorEntry]:
        # Batch and tokens stay symbolic (one plan serves every bucket's profile); channels are static.
        return [TensorEntry(t.name, t.dtype.value, [s if s in ("B", "N") else sizes.value(s) for s in t.shape])
                for t in specs]  # fmt: skip

    contract = graph.spec.contract
    ExportSidecar(
        graph=graph,
        file=path.name,
        external_data=None,
        recipe=None,
        dtype="fp32",
        opset=OPSET,
        inputs=entries(contract.inputs),
        outputs=entries(contract.outputs),
        weights_bytes=4,
        file_sha256=file_digest(path),
        external_data_sha256=None,
    ).save(export_dir)
    return path
