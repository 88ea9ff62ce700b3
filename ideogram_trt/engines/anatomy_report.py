"""``inspect --anatomy`` and ``bench --model``: an engine set's anatomy files read back, summarized and modeled."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import CARDS, Card, Source
from ideogram_trt.core.components import Component
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import resolve_inside
from ideogram_trt.core.manifest import EngineEntry, Manifest
from ideogram_trt.core.schedule import get_preset
from ideogram_trt.engines.anatomy import AnatomyError, AnatomySource, EngineAnatomy, ProfileInfo, block_patterns
from ideogram_trt.engines.step_model import RequestTime, model_engine, model_request, symbol_values

REBUILD = (
    "rebuild it with `ideogram-trt build-engines` (this version records the anatomy), or run "
    "`ideogram-trt inspect --anatomy --from-plan` on the GPU the plans were built for"
)


def load_anatomy(root: Path, entry: EngineEntry) -> EngineAnatomy:
    """The anatomy file the manifest names for ``entry``, checked against its recorded sha256."""
    if entry.anatomy is None:
        raise AnatomyError(
            f"{root}: engine {entry.name} has no anatomy (built before ideogram-trt recorded it); {REBUILD}"
        )
    path = resolve_inside(root, entry.anatomy.file, "anatomy file", AnatomyError, REBUILD)
    if not path.is_file() or file_digest(path) != entry.anatomy.sha256:
        raise AnatomyError(f"{path}: missing or changed since the build (sha256 differs from the manifest); {REBUILD}")
    return EngineAnatomy.load(path)


def _need_plans(root: Path, manifest: Manifest) -> None:
    if not manifest.flavor.is_tensorrt:
        raise InputError(f"{root}: an {manifest.flavor.value} engine set has no TensorRT plans, so no anatomy")


def set_anatomies(
    root: Path, manifest: Manifest, component: str | None = None, bucket: str | None = None
) -> list[EngineAnatomy]:
    _need_plans(root, manifest)
    return [load_anatomy(root, entry) for entry in _entries(manifest, component, bucket)]


def plan_anatomies(
    root: Path, manifest: Manifest, component: str | None = None, bucket: str | None = None
) -> list[EngineAnatomy]:
    """Anatomy read from the plans by TensorRT's engine inspector (a set built before anatomy was recorded): the
    layers only, no costs (the graphs they were built from may be gone)."""
    from ideogram_trt.engines.inspector import inspect_plan, parse_inspector_json

    _need_plans(root, manifest)
    found = []
    for entry in _entries(manifest, component, bucket):
        path = resolve_inside(root, entry.file, "plan", AnatomyError, "rebuild the engine set")
        layers = parse_inspector_json(inspect_plan(path.read_bytes(), manifest.flavor))
        profiles = tuple(ProfileInfo(p.index, p.bucket) for p in entry.profiles)
        source = AnatomySource.ENGINE_INSPECTOR
        anatomy = EngineAnatomy(entry.name, entry.graph.value, source, manifest.runtime_version, profiles,
                                tuple(layers), (None,) * len(layers))  # fmt: skip
        found.append(anatomy)
    return found


def _entries(manifest: Manifest, component: str | None, bucket: str | None) -> list[EngineEntry]:
    """The engines to show: those serving ``bucket`` (one plan per bucket: only that bucket's), of ``component``."""
    entries = [e for e in manifest.engines.values() if bucket is None or not e.buckets or bucket in e.buckets]
    if component is not None:
        entries = [e for e in entries if e.graph.value == component or e.name == component]
        if not entries:
            raise InputError(f"--component {component}: this engine set has {', '.join(manifest.engines)}")
    return entries


def pattern_groups(anatomy: EngineAnatomy, profile: int) -> list[dict[str, Any]]:
    """Runs of consecutive DiT blocks whose kernels (class, precision, modules) are the same."""
    kernels: dict[int, list[tuple[str, str, str]]] = {}
    for layer, _ in anatomy.profile_layers(profile):
        if layer.block is not None and layer.kind.runs_kernel:
            prefix = f"layers.{layer.block}."
            modules = "+".join(m.removeprefix(prefix) for m in layer.modules)
            kernels.setdefault(layer.block, []).append((layer.kind.value, layer.precision, modules))
    groups: list[dict[str, Any]] = []
    for block in sorted(kernels):
        if groups and groups[-1]["kernels"] == kernels[block] and groups[-1]["last"] == block - 1:
            groups[-1]["last"] = block
        else:
            groups.append({"first": block, "last": block, "kernels": kernels[block]})
    return groups


def summarize(anatomy: EngineAnatomy, bucket: Bucket | None, text_tokens: int) -> dict[str, Any]:
    """The JSON of one engine: per DiT block its counts, the runs of identical blocks, kernels per class, and the
    bytes non-GEMM kernels move in one run at ``bucket`` and ``text_tokens`` (batch 1)."""
    graph = Component(anatomy.graph)
    profile = anatomy.profile_for(bucket.name if bucket and graph.spec.per_bucket else None)
    layers = [layer for layer, _ in anatomy.profile_layers(profile.index)]
    classes = Counter(layer.kind.value for layer in layers if layer.kind.runs_kernel)
    # Bytes do not depend on the card: any card's rates give the same byte counts.
    run = model_engine(anatomy, symbol_values(graph, bucket, text_tokens), CARDS["h200"].rates(), profile.bucket)
    return {
        "engine": anatomy.engine,
        "graph": anatomy.graph,
        "source": anatomy.source.value,
        "version": anatomy.version,
        "profile": asdict(profile),
        "kernels": run.kernels,
        "classes": dict(sorted(classes.items())),
        "blocks": {str(b): asdict(p) for b, p in block_patterns(layers).items()},
        "patterns": [
            {"blocks": f"{g['first']}-{g['last']}", "kernels": [list(k) for k in g["kernels"]]}
            for g in pattern_groups(anatomy, profile.index)
        ],
        "non_gemm_bytes_per_run": run.non_gemm_bytes(),
        "costed": any(cost is not None for cost in anatomy.costs),  # False: read from a plan, no graph at hand
        "unresolved_tensors": run.unresolved,
        "sizes": {"bucket": bucket.name if bucket else None, "text_tokens": text_tokens, "batch": 1},
    }


def chosen_bucket(manifest: Manifest, name: str | None) -> Bucket:
    """``--bucket`` of `inspect --anatomy` and `bench --model`: one of the set's, by default its first."""
    bucket = Bucket.parse(name) if name else manifest.bucket_objects[0]
    if bucket.name not in manifest.buckets:
        raise InputError(f"--bucket {bucket.name}: this engine set has {', '.join(manifest.buckets)}")
    return bucket


def anatomies_for_request(root: Path, manifest: Manifest, bucket: Bucket) -> dict[Component, EngineAnatomy]:
    """The plans a request at ``bucket`` runs (``bucket`` from ``chosen_bucket``)."""
    _need_plans(root, manifest)
    found = {}
    for graph in (Component.TEXT_ENCODER, Component.DIT_COND, Component.DIT_UNCOND, Component.VAE_DECODER):
        if manifest.has(graph):
            found[graph] = load_anatomy(root, manifest.engine_for(graph, bucket.name))
    return found


def model_report(
    anatomies: dict[Component, EngineAnatomy],
    bucket: Bucket,
    preset: str,
    text_tokens: int,
    card: Card,
    datasheet: bool,
) -> dict[str, Any]:
    """The modeled request, its breakdown and the two floors, as JSON."""
    source = card.source(Source.DATASHEET if datasheet else None)
    rates = card.rates(source)
    chosen = get_preset(preset)
    result: RequestTime = model_request(anatomies, bucket, chosen, text_tokens, rates)

    def engine(run: Any) -> dict[str, Any] | None:
        if run is None:
            return None
        breakdown = {k: v * 1e3 for k, v in run.breakdown.items()}
        return {"engine": run.engine, "ms": run.seconds * 1e3, "kernels": run.kernels, "breakdown_ms": breakdown,
                "unresolved_tensors": run.unresolved}  # fmt: skip

    return {
        "modeled": True,  # not a measurement: no TensorRT engine ran
        "card": {"key": card.key, "name": card.name, "rates": source.value, **asdict(rates)},
        "bucket": bucket.name,
        "preset": chosen.name.value,
        "text_tokens": text_tokens,
        "steps": result.steps,
        "uncond_steps": result.uncond_steps,
        "uncond_modeled_as": result.uncond_modeled_as,
        "stages": {
            Component.TEXT_ENCODER.value: engine(result.text_encoder),
            "dit_cond_pass": engine(result.cond),
            "dit_uncond_pass": engine(result.uncond),
            Component.VAE_DECODER.value: engine(result.vae),
        },
        "step_ms": result.step_seconds * 1e3,
        "end_to_end_s": result.seconds,
        "breakdown_s": result.breakdown(),
        "kernel_ceiling_floor_s": result.ceiling_seconds(rates),
        # Every modeled FLOP at the FP8 rate: the floor no schedule of these kernels beats.
        "flop_floor_s": result.flops / (rates.fp8_tflops * 1e12),
        "modeled_tflop": result.flops / 1e12,
    }
