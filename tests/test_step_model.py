"""The modeled step time (issue 15): per-layer arithmetic against hand-computed numbers, the DiT's modeled FLOPs
against the FLOP-floor formula (docs/MODEL.md §9), and the `inspect --anatomy` / `bench --model` commands on a
real TensorRT-RTX engine set built on the CPU (no engine runs)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ideogram_trt.cli import main
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.cards import Rates
from ideogram_trt.core.components import Component
from ideogram_trt.core.flops import LAYERS, D, F, dit_attention_flops, dit_gemm_flops
from ideogram_trt.engines.anatomy import AnatomySource, EngineAnatomy, EngineLayer, ProfileInfo, TensorInfo
from ideogram_trt.engines.layer_cost import LayerCost, Poly, UnresolvedSymbol, dim_poly
from ideogram_trt.engines.step_model import model_engine, symbol_values

RATES = Rates(fp8_tflops=100, bf16_tflops=50, attention_bf16_tflops=25, attention_fp8_tflops=30, memory_tbps=1.0,
              launch_us=5.0)  # fmt: skip


def _layer(name: str, kind: str, dtype: str, block: int | None = None) -> EngineLayer:
    onnx = (f"layers.{block}.attention.qkv/MatMul_1",) if block is not None else ()
    return EngineLayer(name, kind, (TensorInfo("x", (-1, 64), dtype),), (), (), "", onnx)


def _synthetic() -> EngineAnatomy:
    bl = Poly.symbol("B") * Poly.symbol("L")
    layers = (
        replace(_layer("layers.0.attention.qkv/MatMul_1_myl0_1", "gemm", "FP8", 0), stream=2),
        _layer("_gemm_mha_v2_myl0_2", "kgen", "BFloat16", 0),
        _layer("__myl_AddMul_myl0_3", "kgen", "BFloat16", 0),
        _layer("__mye1_myl0_4", "shape_call", "Int32"),
    )
    costs = (
        LayerCost(bl.scale(2 * 64 * 128), bl.scale(64) + Poly.const(64 * 128) + bl.scale(128 * 2)),
        LayerCost(Poly.const(1e9), Poly.const(1e3)),
        LayerCost(Poly(), Poly.const(1e6)),
        None,
    )
    return EngineAnatomy("dit_cond", "dit_cond", AnatomySource.BUILD_REPORT, "1.7.1.116",
                         (ProfileInfo(0, "256x256"),), layers, costs)  # fmt: skip


def test_the_model_reproduces_hand_arithmetic(tmp_path: Path) -> None:
    path = tmp_path / "x.anatomy.json"
    path.write_text(_synthetic().to_json())
    loaded = EngineAnatomy.load(path)
    assert loaded == _synthetic()  # the file keeps every field (streams included)
    run = model_engine(loaded, {"B": 1, "L": 100}, RATES, "256x256")
    gemm, attention, other = run.layers
    # GEMM: 2·100·64·128 = 1,638,400 FLOPs at 100 TFLOP/s = 16.384 ns; bytes 6,400 + 8,192 + 25,600 = 40,192 at
    # 1 TB/s = 40.192 ns: memory-bound.
    assert (gemm.flops, gemm.bytes, gemm.bound) == (1_638_400, 40_192, "memory")
    assert gemm.seconds == pytest.approx(40.192e-9)
    # Attention: 1e9 FLOPs at 25 TFLOP/s (bf16) = 40 us; elementwise 1 MB at 1 TB/s = 1 us.
    assert (attention.seconds, attention.bound) == (pytest.approx(40e-6), "compute")
    assert (other.seconds, other.bound) == (pytest.approx(1e-6), "memory")
    assert run.kernels == 3  # the shape layer launches nothing
    breakdown = run.breakdown
    assert breakdown == pytest.approx({"gemm": 40.192e-9, "attention": 40e-6, "elementwise": 1e-6, "dequant": 0.0,
                                       "launch": 3 * 5e-6})  # fmt: skip
    assert run.seconds == pytest.approx(40.192e-9 + 40e-6 + 1e-6 + 15e-6)
    assert run.ceiling_seconds(RATES) == pytest.approx(16.384e-9 + 40e-6)  # FLOPs alone, GEMM and attention
    fp8 = model_engine(_synthetic(), {"B": 1, "L": 100}, RATES.__class__(**{**RATES.__dict__, "memory_tbps": 1e6}),
                       "256x256")  # fmt: skip
    assert fp8.layers[0].bound == "compute" and fp8.layers[0].seconds == pytest.approx(16.384e-9)


def test_shape_symbols_become_polynomials() -> None:
    assert dim_poly("4*GH*GW").evaluate({"GH": 3, "GW": 5}) == 60
    assert dim_poly("T + N").evaluate({"T": 7, "N": 9}) == 16
    assert dim_poly("2*(T)") is None
    with pytest.raises(UnresolvedSymbol):
        dim_poly("unk__3").evaluate({"T": 1})
    poly = dim_poly("2*B*L") * dim_poly("L")
    assert Poly.from_json(json.loads(json.dumps(poly.to_json()))) == poly
    assert poly.evaluate({"B": 2, "L": 10}) == 400
    for bad in ([[1, {"B": 0}]], [["x", {}]], {"B": 1}, [[float("inf"), {}]]):
        with pytest.raises(ValueError):
            Poly.from_json(bad)


FULL_SIZE = Path(__file__).parent.parent / "docs" / "bench" / "anatomy"


@pytest.mark.parametrize("recipe", ["fp8", "fp8-wo", "bf16"])
def test_the_full_size_dits_modeled_flops_are_the_flop_floors(recipe: str) -> None:
    """The 34-block plan at 1024² and 512 text tokens: its block linears' FLOPs equal 34·L·(8d² + 6df) and its
    attention 34·4·L²·d (core/flops.py, docs/MODEL.md §9), computed here from the formula, not the model."""
    anatomy = EngineAnatomy.load(FULL_SIZE / f"dit_cond.{recipe}.anatomy.json")
    length = 512 + Bucket(1024, 1024).tokens
    run = model_engine(anatomy, symbol_values(Component.DIT_COND, Bucket(1024, 1024), 512), RATES, "1024x1024")
    blocks = [layer for layer in run.layers if layer.block is not None and layer.kind.is_gemm]
    by_name = {layer.name: layer for layer in anatomy.layers}
    linears = sum(x.flops for x in blocks if not any("adaln" in m for m in by_name[x.name].modules))
    assert linears == pytest.approx(LAYERS * length * (8 * D * D + 6 * D * F), rel=1e-12)
    attention = sum(x.flops for x in run.layers if x.kind.value == "attention")
    assert attention == pytest.approx(dit_attention_flops(length), rel=1e-12)
    # Everything else the plan's GEMMs do (adaLN per image, the latent projections) is < 0.1% of it.
    assert run.gemm_flops == pytest.approx(dit_gemm_flops(length), rel=1e-3)


@pytest.fixture(scope="module")
def rtx_set(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint's bf16 DiT and VAE as a TensorRT-RTX engine set (SM 8.9), built by the CLI."""
    out = tmp_path_factory.mktemp("rtx") / "set"
    assert main(["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "bf16",
                 "--flavor", "tensorrt-rtx", "--compute-capability", "8.9", "--buckets", "256x256,256x384",
                 "--components", "dit_cond,vae_decoder", "--max-text-tokens", "128"]) == 0  # fmt: skip
    return out


def test_every_plan_has_its_anatomy_beside_it_hashed_in_the_manifest(rtx_set: Path) -> None:
    import hashlib

    manifest = json.loads((rtx_set / "manifest.json").read_text())
    assert manifest["schema"] == 3
    for name, entry in manifest["engines"].items():
        record = entry["anatomy"]
        path = rtx_set / record["file"]
        assert path.name == Path(entry["file"]).name.replace(".plan", ".anatomy.json")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"], name
        body = json.loads(path.read_text())
        assert (body["source"] == "build-report" and [p["bucket"] for p in body["profiles"]] == entry["buckets"]) or (
            not entry["buckets"]
        )
        # One profile per bucket, each with its own layers (TensorRT-RTX builds a myelin graph per profile).
        assert {layer["profile"] for layer in body["layers"]} == set(range(len(entry["profiles"])))


def test_tiny_dit_flops_follow_the_formula_at_its_widths(rtx_set: Path, tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "transformer" / "config.json").read_text())
    d = config["num_attention_heads"] * config["attention_head_dim"]
    f, layers = config["intermediate_size"], config["num_layers"]
    manifest = json.loads((rtx_set / "manifest.json").read_text())
    anatomy = EngineAnatomy.load(rtx_set / manifest["engines"]["dit_cond"]["anatomy"]["file"])
    for bucket, text in ((Bucket(256, 256), 77), (Bucket(256, 384), 128)):
        length = bucket.tokens + text
        run = model_engine(anatomy, symbol_values(Component.DIT_COND, bucket, text), RATES, bucket.name)
        by_name = {layer.name: layer for layer in anatomy.layers}
        linears = sum(x.flops for x in run.layers if x.block is not None and x.kind.is_gemm
                      and not any("adaln" in m for m in by_name[x.name].modules))  # fmt: skip
        assert linears == pytest.approx(layers * length * (8 * d * d + 6 * d * f), rel=1e-12)
        assert sum(x.flops for x in run.layers if x.kind.value == "attention") == pytest.approx(
            dit_attention_flops(length, d, layers), rel=1e-12
        )


def test_a_gemms_bytes_are_its_input_weight_and_output(rtx_set: Path, tiny_dir: Path) -> None:
    """qkv of block 0 in the bf16 plan, at two sizes: it reads a [B·L, d] bf16 input and the [d, 3d] bf16 weight
    (plus TensorRT's two float32 alpha/beta scalars) and writes [B·L, 3d] bf16 — computed here from the config."""
    config = json.loads((tiny_dir / "transformer" / "config.json").read_text())
    d = config["num_attention_heads"] * config["attention_head_dim"]
    manifest = json.loads((rtx_set / "manifest.json").read_text())
    anatomy = EngineAnatomy.load(rtx_set / manifest["engines"]["dit_cond"]["anatomy"]["file"])
    for bucket, text, batch in ((Bucket(256, 256), 77, 1), (Bucket(256, 384), 128, 2)):
        rows = batch * (bucket.tokens + text)
        values = symbol_values(Component.DIT_COND, bucket, text, batch)
        run = model_engine(anatomy, values, RATES, bucket.name)
        (qkv,) = [x for x in run.layers if x.name.startswith("layers.0.attention.qkv/")]
        assert qkv.bytes == 2 * d * rows + 2 * d * 3 * d + 2 * 4 + 2 * 3 * d * rows


def test_an_fp8_gemms_bytes_are_its_own_tensors(exports, tiny_dir: Path) -> None:
    """The fp8 qkv GEMM: its FP8 input [B·L, d] is not to be taken for the (transposed, static) FP8 weight
    [3d, d] its metadata also names; it writes [B·L, 3d] bf16."""
    from ideogram_trt.core.sidecar import ExportSidecar
    from ideogram_trt.engines.anatomy import parse_layer_report
    from ideogram_trt.engines.layer_cost import onnx_layer_costs
    from ideogram_trt.engines.profiles import AxisRange, ProfileRanges, profile_for
    from ideogram_trt.engines.tensorrt_adapter import BuildTarget, Flavor, build_engine

    config = json.loads((tiny_dir / "transformer" / "config.json").read_text())
    d = config["num_attention_heads"] * config["attention_head_dim"]
    folder = exports.get("fp8", "bf16", ("dit_cond", "dit_cond_masked", "dit_uncond"))  # test_tensorrt_build.py's
    inputs = ExportSidecar.load(folder, Component.DIT_COND).inputs
    profile = profile_for(inputs, Bucket(256, 256), ProfileRanges(AxisRange(1, 1, 2), AxisRange(1, 32, 128)))
    result = build_engine(folder / "dit_cond.onnx", [profile], BuildTarget(Flavor.TENSORRT_RTX, ("8.9",)), True)
    layers = parse_layer_report(result.layer_reports[0], result.version)
    costs = onnx_layer_costs(folder / "dit_cond.onnx", layers)
    (cost,) = [c for x, c in zip(layers, costs, strict=True) if x.name.startswith("layers.0.attention.qkv/")]
    assert cost is not None
    for rows in (256 + 7, 2 * (256 + 100)):
        assert cost.bytes.evaluate({"B": 1, "L": rows}) == d * rows + 3 * d * d + 2 * 4 + 2 * 3 * d * rows


def test_inspect_anatomy_json_has_the_per_block_counts(rtx_set: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "anatomy.json"
    assert main(["inspect", str(rtx_set), "--anatomy", "--component", "dit_cond", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dit_cond:" in printed and "blocks 0-0" in printed
    (engine,) = json.loads(out.read_text())["engines"]
    blocks = engine["blocks"]
    assert sorted(blocks) == ["0", "1"]
    for block in blocks.values():
        assert set(block) >= {"gemm", "fp8_gemm", "attention", "attention_precision", "other"}
        assert block["fp8_gemm"] == 0 and block["attention"] == 1 and block["attention_precision"] == "BFloat16"
    assert blocks["0"]["gemm"] == 4  # qkv, o, w3+w1, w2 (the adaLN GEMM of both blocks is fused into block 1's)
    assert engine["non_gemm_bytes_per_run"] > 0


def test_bench_model_adds_its_stages_up(rtx_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    args = ["bench", "--model", "--engines", str(rtx_set), "--card", "rtx4090", "--bucket", "256x384"]
    assert main([*args, "--text-tokens", "100", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["modeled"] is True and report["card"]["rates"] == "datasheet"
    assert report["uncond_modeled_as"] == "dit_cond@T=0"  # this set has no dit_uncond plan
    stages = report["stages"]
    assert stages["text_encoder"] is None  # not in this set
    cond, uncond, vae = stages["dit_cond_pass"]["ms"], stages["dit_uncond_pass"]["ms"], stages["vae_decoder"]["ms"]
    assert report["steps"] == 20 and report["uncond_steps"] == 20  # V4_DEFAULT_20 guides every step
    assert report["end_to_end_s"] == pytest.approx((20 * cond + 20 * uncond + vae) / 1e3)
    assert report["step_ms"] == pytest.approx(cond + uncond)
    assert sum(report["breakdown_s"].values()) == pytest.approx(report["end_to_end_s"])
    assert report["kernel_ceiling_floor_s"] <= report["end_to_end_s"]


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("card", "unknown card 'a100': use one of h100, h200"),
        ("bucket", "--bucket 512x512: this engine set has 256x256, 256x384"),
        ("old-set", "has no anatomy (built before ideogram-trt recorded it); rebuild it with"),
        ("changed", "changed since the build (sha256 differs from the manifest)"),
        ("onnxruntime", "an onnxruntime engine set has no TensorRT plans, so no anatomy"),
        ("component", "--component dit_uncond: this engine set has dit_cond, vae_decoder, sampler"),
        ("text", "--text-tokens 4096: give a prompt length from 1 to 128 tokens (the engine set's profiles)"),
    ],
)
def test_bad_input_is_one_line(case: str, needle: str, rtx_set: Path, one_graph_engines: Path, tmp_path: Path,
                               capsys) -> None:  # fmt: skip
    target = rtx_set
    if case in ("old-set", "changed"):
        target = tmp_path / "copy"
        shutil.copytree(rtx_set, target)
        manifest = json.loads((target / "manifest.json").read_text())
        if case == "old-set":  # a schema-2 set: what build-engines wrote before the anatomy
            manifest["schema"] = 2
            for entry in manifest["engines"].values():
                (target / entry.pop("anatomy")["file"]).unlink()
            (target / "manifest.json").write_text(json.dumps(manifest))
        else:
            anatomy = target / manifest["engines"]["dit_cond"]["anatomy"]["file"]
            anatomy.write_text(anatomy.read_text().replace("BFloat16", "FP8"))
    if case == "onnxruntime":
        target = one_graph_engines
    argv = ["bench", "--model", "--engines", str(target), "--card", "a100" if case == "card" else "h200"]
    if case == "bucket":
        argv += ["--bucket", "512x512"]
    if case == "text":
        argv += ["--text-tokens", "4096"]
    if case == "component":
        argv = ["inspect", str(target), "--anatomy", "--component", "dit_uncond"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err, err
