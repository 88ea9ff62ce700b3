"""Engine anatomy from a deserialized plan: the engine inspector's JSON, read into ``anatomy.EngineLayer`` records.

``ICudaEngine.create_engine_inspector().get_engine_information(LayerInformationFormat.JSON)`` (what
``trtexec --exportLayerInfo`` writes) describes the same layers as the builder's ``Layers:`` report, as a
``{"Layers": [...]}`` object; a plan built with ``ProfilingVerbosity.DETAILED`` gives one object per layer::

    {"Name": N, "LayerType": T, "Inputs": [{"Name": …, "Location": "Device", "Dimensions": [-1, 64],
     "Format/Datatype": "Row major linear BFloat16 format"}, …], "Outputs": […], "ParameterType": P,
     "Weights": {"Type": "Half", "Count": 4096}, "TacticName": K, "StreamId": 0,
     "Metadata": "[ONNX Layer: a]\\x1e[ONNX Layer: b]"}

Classic layers carry ``ParameterType`` (``Convolution``, ``Reformat``, ``MatrixMultiply``…), which is the name
``EngineLayer.kind`` classifies on; myelin layers (``gemm``, ``kgen``, ``shape_call``…) have none and write bare
type names (``Half``, ``FP8``) as their format. Reading a plan needs the GPU it was built for; parsing the JSON
needs nothing, so it is tested on hand-written text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ideogram_trt.core.manifest import Flavor
from ideogram_trt.engines.anatomy import AnatomyError, EngineLayer, TensorInfo, layer_profile
from ideogram_trt.engines.tensorrt_adapter import _collecting_logger, load_tensorrt

# TensorRT's names for a type in format strings ("Channel major FP16 format where channel % 8 == 0"), weight
# records and myelin tensors, mapped to the names the TensorRT-RTX build report uses (anatomy.TensorInfo).
_DTYPES = {
    "fp32": "Float",
    "float": "Float",
    "fp16": "Half",
    "half": "Half",
    "bf16": "BFloat16",
    "bfloat16": "BFloat16",
    "fp8": "FP8",
    "fp4": "FP4",
    "int4": "Int4",
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "bool": "Bool",
    "double": "Double",
    "e8m0": "E8M0",
}
# Formats TensorRT writes when it does not know the layout or type: honest "Unknown", not a parse failure.
_UNKNOWN_FORMATS = {"unknown format", "none", "format not available due to dynamic shapes"}
_WORD = re.compile(r"[A-Za-z0-9]+")
# Metadata entries are separated by ASCII record/unit separators (TensorRT 8.6+), or simply concatenated.
_SEPARATORS = re.compile("[\x1e\x1f]")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: (.*?)\](?=\[ONNX Layer: |$)")
_WEIGHT_KEYS = ("Weights", "Bias")  # classic convolution / fully-connected layers: a type and a count, no shape


def _dtype(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise AnatomyError(f"{where}: its format/datatype is not a string ({text!r:.60})")
    cleaned = text.strip().rstrip(".")
    if cleaned.lower() in _UNKNOWN_FORMATS:
        return "Unknown"
    found = {_DTYPES[w.lower()] for w in _WORD.findall(cleaned) if w.lower() in _DTYPES}
    if len(found) != 1:
        raise AnatomyError(f"{where}: unrecognised format/datatype {text!r:.80}")
    return found.pop()


def _tensor(raw: object, where: str) -> TensorInfo:
    if not isinstance(raw, dict):
        raise AnatomyError(f"{where} is not an object")
    name = raw.get("Name")
    if not isinstance(name, str):
        raise AnatomyError(f"{where} has no Name")
    where = f"{where} {name!r:.80}"
    dims = raw.get("Dimensions")
    # bool is an int to Python; a dimension never is one
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise AnatomyError(f"{where}: unreadable Dimensions {dims!r:.60}")
    # TensorRT-RTX names the type on its own ("Datatype"); datacenter TensorRT folds it into the format
    kind = raw["Datatype"] if "Datatype" in raw else raw.get("Format/Datatype")
    return TensorInfo(name, tuple(dims), _dtype(kind, where))


def _tensors(layer: dict[str, Any], key: str, where: str) -> tuple[TensorInfo, ...]:
    raw = layer.get(key, [])
    if not isinstance(raw, list):
        raise AnatomyError(f"{where}: {key} is not a list")
    return tuple(_tensor(t, f"{where}, {key.lower()}[{i}]") for i, t in enumerate(raw))


def _weights(layer: dict[str, Any]) -> tuple[TensorInfo, ...]:
    """Weight records as constants: only a type and an element count are given, so the dims are the flat count
    (what byte accounting needs); a record without a usable count or a known type is left out, not guessed."""
    found = []
    for key in _WEIGHT_KEYS:
        record = layer.get(key)
        if not isinstance(record, dict):
            continue
        count, kind = record.get("Count"), record.get("Type")
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0 or not isinstance(kind, str):
            continue
        dtype = _DTYPES.get(kind.lower())
        if dtype is not None:
            found.append(TensorInfo(key, (count,), dtype))
    return tuple(found)


def _onnx_layers(metadata: object, where: str) -> tuple[str, ...]:
    if metadata is None:
        return ()
    if not isinstance(metadata, str):
        raise AnatomyError(f"{where}: Metadata is not a string")
    return tuple(node for part in _SEPARATORS.split(metadata) for node in _ONNX_LAYER.findall(part.strip()))


def _layer(raw: object, index: int) -> EngineLayer:
    where = f"engine inspector layer {index}"
    if isinstance(raw, str):
        raise AnatomyError(
            "the engine inspector lists layer names only: the plan was built without detailed profiling verbosity "
            "(ProfilingVerbosity.DETAILED); rebuild it with detailed verbosity"
        )
    if not isinstance(raw, dict):
        raise AnatomyError(f"{where} is not an object")
    name, layer_type = raw.get("Name"), raw.get("LayerType")
    if not isinstance(name, str) or not name:
        raise AnatomyError(f"{where} has no Name")
    where = f"{where} {name!r:.80}"
    if not isinstance(layer_type, str) or not layer_type:
        raise AnatomyError(f"{where} has no LayerType")
    # ParameterType is the layer's kind (Convolution) where LayerType names its implementation (CaskConvolution)
    parameter_type = raw.get("ParameterType")
    tactic, stream = raw.get("TacticName", ""), raw.get("StreamId", 0)
    return EngineLayer(
        name=name,
        layer_type=parameter_type if isinstance(parameter_type, str) and parameter_type else layer_type,
        inputs=_tensors(raw, "Inputs", where),
        constants=_tensors(raw, "Constants", where) + _weights(raw),
        outputs=_tensors(raw, "Outputs", where),
        tactic=tactic if isinstance(tactic, str) else "",
        onnx_layers=_onnx_layers(raw.get("Metadata"), where),
        profile=layer_profile(name),
        stream=stream if type(stream) is int and stream >= 0 else 0,
    )


def parse_inspector_json(text: str) -> list[EngineLayer]:
    """The layers of an engine inspector's JSON (``get_engine_information`` or ``trtexec --exportLayerInfo``)."""
    try:
        # TensorRT 8.6 wrote the metadata separators unescaped, which strict JSON forbids inside strings
        document = json.loads(text, strict=False)
    except (ValueError, TypeError) as exc:
        raise AnatomyError(f"the engine layer information is not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("Layers"), list):
        raise AnatomyError('the engine layer information has no "Layers" list: not engine inspector JSON')
    layers = [_layer(raw, i) for i, raw in enumerate(document["Layers"])]
    if not layers:
        raise AnatomyError("the engine layer information lists no layers")
    return layers


def inspect_plan(plan: bytes, flavor: Flavor) -> str:
    """The engine inspector's JSON for ``plan``; needs the flavor's TensorRT and the GPU the plan was built for."""
    module: Any = load_tensorrt(flavor)
    messages: list[tuple[Any, str]] = []
    engine: Any = None
    try:
        runtime: Any = module.Runtime(_collecting_logger(module, messages))
        engine = runtime.deserialize_cuda_engine(plan)
    except Exception as exc:
        messages.append((module.ILogger.Severity.ERROR, str(exc)))
    if engine is None:
        errors = [m for s, m in messages if s == module.ILogger.Severity.ERROR and "cudaError 35" not in m]
        reason = " ".join((errors[0] if errors else "no error message").split())
        reason = reason if len(reason) <= 160 else reason[:159] + "…"
        raise AnatomyError(
            f"this machine cannot load the plan ({flavor.value}: {reason}); TensorRT needs the GPU the plan was "
            "built for: rebuild the engine set with this ideogram-trt version (it records the anatomy at build "
            "time), or run `inspect --anatomy --from-plan` on a machine with that GPU"
        )
    inspector: Any = engine.create_engine_inspector()
    return str(inspector.get_engine_information(module.LayerInformationFormat.JSON))
