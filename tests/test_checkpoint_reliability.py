"""Issue 12, checkpoint side: non-finite values (7), unbounded config sizes (8), unreadable configs and weight
files (11) and calibrations without a DiT's table (18). Every refusal is one ``error:`` line naming the file and
the tensor or key, a non-zero exit, and nothing changed in the folders given.

One copy of the tiny checkpoint serves the module: each case breaks one small file (a config, a scale or a few
bytes of a weight, patched in place), runs the CLI in-process, and puts the component folder back from the
session checkpoint."""

from __future__ import annotations

import json
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli, snapshot

DIT = "transformer/diffusion_pytorch_model.safetensors"
UNCOND = "unconditional_transformer/diffusion_pytorch_model.safetensors"
TEXT = "text_encoder/model.safetensors"
VAE = "vae/diffusion_pytorch_model.safetensors"
GUIDED = ("V4_QUALITY_48", "V4_DEFAULT_20", "V4_TURBO_12")  # the presets that run the unconditional DiT


@pytest.fixture(scope="module")
def shared(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    copy = tmp_path_factory.mktemp("issue12") / "ckpt"
    shutil.copytree(tiny_dir, copy)
    pristine = _relative(snapshot(copy))
    yield copy
    assert _relative(snapshot(copy)) == pristine  # every case put its folder back


def _relative(snap: dict[str, tuple[int, int, str]]) -> dict[str, tuple[int, int, str]]:
    return {key.split(":", 1)[1]: value for key, value in snap.items()}


def _restore(shared: Path, tiny_dir: Path, *components: str) -> None:
    for component in components:
        target = shared / component
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (tiny_dir / component).is_dir():
            shutil.copytree(tiny_dir / component, target)
        else:
            shutil.copy2(tiny_dir / component, target)


def _refused(args: list[object], capsys, roots: list[Path], *needles: str) -> str:  # type: ignore[no-untyped-def]
    """Run the CLI: one error line holding every needle, exit 2, and nothing under ``roots`` changed."""
    before = snapshot(*roots)
    start = time.perf_counter()
    code, out, err = run_cli([str(a) for a in args], capsys)
    elapsed = time.perf_counter() - start
    line = assert_one_line_error(code, err, *needles)
    assert code == 2 and out == "", (code, out)
    assert snapshot(*roots) == before
    assert elapsed < 5, f"{elapsed:.1f}s to refuse"
    return line


def _patch_tensor(file: Path, key: str, element: int, value: bytes) -> None:
    """Overwrite the bytes of one element of one tensor in place (the header stays as it is)."""
    with file.open("r+b") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
        entry = header[key]
        width = {"F8_E4M3": 1, "BF16": 2, "F32": 4}[entry["dtype"]]
        assert len(value) == width
        handle.seek(8 + size + entry["data_offsets"][0] + element * width)
        handle.write(value)


F32 = {"NaN": struct.pack("<f", float("nan")), "+Inf": struct.pack("<f", float("inf")),
       "zero": struct.pack("<f", 0.0), "negative (-0.5)": struct.pack("<f", -0.5),
       "-Inf": struct.pack("<f", float("-inf"))}  # fmt: skip
BF16 = {"NaN": b"\xc0\x7f", "+Inf": b"\x80\x7f", "-Inf": b"\x80\xff"}


# --- 7. non-finite and non-positive values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "key", "row", "what"),
    [
        (DIT, "layers.0.attention.qkv.weight_scale", 5, "NaN"),
        (DIT, "final_layer.linear.weight_scale", 0, "negative (-0.5)"),
        (DIT, "llm_cond_proj.weight_scale", 3, "-Inf"),
        (UNCOND, "layers.1.feed_forward.w2.weight_scale", 7, "+Inf"),
        (UNCOND, "input_proj.weight_scale", 1, "zero"),
        (TEXT, "language_model.layers.35.mlp.down_proj.weight_scale", 2, "zero"),
        (TEXT, "language_model.layers.0.self_attn.q_proj.weight_scale", 0, "NaN"),
    ],
)
def test_bad_scale_is_refused_by_check_and_on_open(
    shared: Path, tiny_dir: Path, tmp_path: Path, capsys, file: str, key: str, row: int, what: str
) -> None:
    _patch_tensor(shared / file, key, row, F32[what])
    try:
        needles = (file, repr(key), f"row {row} is {what}", "finite and positive")
        _refused(["check", shared], capsys, [shared], *needles)
        _refused(["check", shared, "--headers-only"], capsys, [shared], *needles)  # scales are always read
        out = tmp_path / "cal.json"
        args = ["calibrate", "--model", shared, "--out", out, "--preset", "V4_TURBO_12", "--limit", "1"]
        _refused(args, capsys, [shared, tmp_path], *needles)
        assert not out.exists()
    finally:
        _restore(shared, tiny_dir, file.split("/")[0])


@pytest.mark.parametrize(
    ("file", "key", "element", "value", "shown"),
    [
        (DIT, "layers.0.attention_norm1.weight", 3, BF16["NaN"], "NaN at index [3]"),
        (UNCOND, "input_proj.bias", 0, BF16["+Inf"], "+Inf at index [0]"),
        (TEXT, "language_model.embed_tokens.weight", 32 * 7 + 5, BF16["-Inf"], "-Inf at index [7, 5]"),
        (DIT, "layers.1.attention.qkv.weight", 64 * 2 + 1, b"\x7f", "byte 0x7F (NaN in float8_e4m3fn) at index [2, 1]"),
        (TEXT, "language_model.layers.3.self_attn.q_proj.weight", 0, b"\xff", "byte 0xFF"),
        (VAE, "decoder.conv_in.weight", 4, F32["NaN"], "NaN at index [0, 0, 1, 1]"),
    ],
)
def test_non_finite_weight_is_found_by_the_scan(
    shared: Path, tiny_dir: Path, capsys, file: str, key: str, element: int, value: bytes, shown: str
) -> None:
    _patch_tensor(shared / file, key, element, value)
    try:
        _refused(["check", shared], capsys, [shared], file, repr(key), shown, "black images")
        code, out, _ = run_cli(["check", shared, "--headers-only"], capsys)  # the documented opt-out
        assert code == 0 and "weights not scanned" in out
    finally:
        _restore(shared, tiny_dir, file.split("/")[0])


def test_a_good_checkpoint_scans_clean(shared: Path, capsys) -> None:
    before = snapshot(shared)
    code, out, err = run_cli(["check", shared], capsys)
    assert code == 0, err
    assert "weights scanned: 912 tensors" in out and "all finite" in out and "checkpoint OK" in out
    assert snapshot(shared) == before


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))  # json writes nan / inf as the NaN / Infinity literals


def _set(*keys: str, value: object) -> Callable[[dict], None]:  # type: ignore[type-arg]
    def edit(config: dict) -> None:  # type: ignore[type-arg]
        for key in keys[:-1]:
            config = config[key]
        config[keys[-1]] = value

    return edit


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("file", "keys", "value", "literal"),
    [
        ("transformer/config.json", ("rope_theta",), NAN, "NaN"),
        ("transformer/config.json", ("norm_eps",), INF, "Infinity"),
        ("unconditional_transformer/config.json", ("rope_theta",), -INF, "-Infinity"),
        ("text_encoder/config.json", ("text_config", "rms_norm_eps"), NAN, "NaN"),
        ("text_encoder/config.json", ("text_config", "rope_parameters", "rope_theta"), INF, "Infinity"),
        ("vae/config.json", ("batch_norm_eps",), -INF, "-Infinity"),
        ("vae/config.json", ("batch_norm_momentum",), NAN, "NaN"),  # a key the decoder never reads
        ("scheduler/scheduler_config.json", ("shift",), NAN, "NaN"),
        ("model_index.json", ("_diffusers_version",), INF, "Infinity"),
    ],
)
def test_non_finite_config_numbers(
    shared: Path, tiny_dir: Path, capsys, file: str, keys: tuple[str, ...], value: float, literal: str
) -> None:
    _edit_json(shared / file, _set(*keys, value=value))
    try:
        _refused(["check", shared], capsys, [shared], file, repr(".".join(keys)), f"is {literal}", "finite")
    finally:
        _restore(shared, tiny_dir, file.split("/")[0])


def test_overflowing_float_literal(shared: Path, tiny_dir: Path, capsys) -> None:
    path = shared / "transformer" / "config.json"
    path.write_text(path.read_text().replace('"rope_theta": 5000000.0', '"rope_theta": 1e999'))
    try:
        _refused(["check", shared], capsys, [shared], "transformer/config.json", "'rope_theta' is 1e999")
    finally:
        _restore(shared, tiny_dir, "transformer")


def test_configs_from_python_refuse_non_finite_too() -> None:
    """The typed readers check again: a dict built in code (not read from a file) holding NaN."""
    from ideogram_trt.core.errors import ConfigError
    from ideogram_trt.model.configs import DiTConfig, SchedulerConfig, TextEncoderConfig, VAEConfig

    cases = [
        (DiTConfig, {"rope_theta": NAN}, "'rope_theta' must be a finite number"),
        (TextEncoderConfig, {"text_config": {"rope_theta": INF}}, "'rope_theta' must be a finite number"),
        (VAEConfig, {"batch_norm_eps": NAN}, "'batch_norm_eps' must be a finite number"),
        (SchedulerConfig, {"shift": -INF}, "'shift' must be a finite number"),
    ]
    for kind, raw, message in cases:
        with pytest.raises(ConfigError, match=message):
            kind.from_dict(raw, "src")  # type: ignore[attr-defined]


# --- 8. bounded sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "keys", "value", "needles"),
    [
        ("transformer/config.json", ("num_layers",), 10**12, ("'num_layers' is 1000000000000", "(256;")),
        ("transformer/config.json", ("num_attention_heads",), 5000, ("'num_attention_heads'", "(1024;")),
        ("transformer/config.json", ("attention_head_dim",), 2**20, ("'attention_head_dim'", "(65536;")),
        ("transformer/config.json", ("attention_head_dim",), 65536, ("x 'num_attention_heads' = 131072", "65536")),
        ("unconditional_transformer/config.json", ("intermediate_size",), 10**9, ("'intermediate_size'", "262144")),
        ("unconditional_transformer/config.json", ("llm_features_dim",), 10**7, ("'llm_features_dim'", "851968")),
        ("text_encoder/config.json", ("text_config", "num_hidden_layers"), 10**12, ("'num_hidden_layers'", "256")),
        ("text_encoder/config.json", ("text_config", "vocab_size"), 2**21, ("'vocab_size' is 2097152", "1048576")),
        ("text_encoder/config.json", ("text_config", "head_dim"), 10**6, ("'head_dim' is 1000000", "65536")),
        ("text_encoder/config.json", ("text_config", "max_position_embeddings"), 10**15, ("16777216",)),
        ("text_encoder/config.json", ("text_config", "num_key_value_heads"), 4096, ("'num_key_value_heads'",)),
        ("vae/config.json", ("layers_per_block",), 10**9, ("'layers_per_block' is 1000000000", "(64;")),
        ("vae/config.json", ("latent_channels",), 10**7, ("'latent_channels'", "65536")),
        ("vae/config.json", ("block_out_channels",), [32, 64, 10**9, 64], ("'block_out_channels' is 1000000000",)),
        ("vae/config.json", ("norm_num_groups",), 10**6, ("'norm_num_groups'", "1024")),
        ("transformer/config.json", ("rope_theta",), 1e300, ("'rope_theta' is 1e+300", "1e+12")),
        ("text_encoder/config.json", ("text_config", "rms_norm_eps"), 10.0, ("'rms_norm_eps' is 10.0", "(1;")),
    ],
)
def test_huge_config_sizes_are_refused_promptly(
    shared: Path, tiny_dir: Path, capsys, file: str, keys: tuple[str, ...], value: object, needles: tuple[str, ...]
) -> None:
    _edit_json(shared / file, _set(*keys, value=value))
    try:
        _refused(["check", shared], capsys, [shared], file, "largest", *needles)  # _refused: < 5 s
    finally:
        _restore(shared, tiny_dir, file.split("/")[0])


def test_a_4000_digit_number(shared: Path, tiny_dir: Path, capsys) -> None:
    path = shared / "transformer" / "config.json"
    cases = {4000: ("'num_layers' is 9999", "(4000 characters)"), 5000: ("not a usable JSON config",)}
    for digits, needles in cases.items():  # below and above Python's int-parsing limit
        path.write_text(path.read_text().replace('"num_layers": 2', f'"num_layers": {"9" * digits}'))
        try:
            _refused(["check", shared], capsys, [shared], "transformer/config.json", *needles)
        finally:
            _restore(shared, tiny_dir, "transformer")


@pytest.mark.parametrize(
    ("file", "keys", "value", "needles"),
    [
        ("transformer/config.json", ("num_layers",), 3, ("'num_layers' is 3", DIT, "holds 2 (layers.0 … layers.1)")),
        ("unconditional_transformer/config.json", ("num_layers",), 200, ("'num_layers' is 200", "holds 2")),
        ("text_encoder/config.json", ("text_config", "num_hidden_layers"), 40, ("is 40", TEXT, "holds 36")),
    ],
)
def test_layer_counts_are_checked_against_the_weights(
    shared: Path, tiny_dir: Path, capsys, file: str, keys: tuple[str, ...], value: int, needles: tuple[str, ...]
) -> None:
    _edit_json(shared / file, _set(*keys, value=value))
    try:
        _refused(["check", shared], capsys, [shared], file, *needles)
    finally:
        _restore(shared, tiny_dir, file.split("/")[0])


# --- 11. unreadable configs and weight files ---------------------------------------------------------------


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(data)


def _json_edit(rel: str, *keys: str, value: object) -> Callable[[Path], None]:
    return lambda root: _edit_json(root / rel, _set(*keys, value=value))


def _header(rel: str, make: Callable[[bytes, int], bytes]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(make(data, struct.unpack("<Q", data[:8])[0]))

    return edit


def _directory(rel: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / rel).unlink()
        (root / rel).mkdir()

    return edit


def _index(rel: str, body: bytes, shard_dir: bool = False) -> Callable[[Path], None]:
    """Replace a single weight file by a sharded index holding ``body``."""

    def edit(root: Path) -> None:
        (root / rel).unlink()
        (root / (rel + ".index.json")).write_bytes(body)
        if shard_dir:
            (root / rel).parent.joinpath("shard-1.safetensors").mkdir()

    return edit


TE_CONFIG = "text_encoder/config.json"
UNREADABLE = {
    "config not UTF-8": (_write("transformer/config.json", b'{"num_layers": 2, "x": "caf\xe9"}'),
                         ("transformer/config.json", "not UTF-8 text (byte 27 is 0xe9)")),
    "config UTF-16": (_write("vae/config.json", '{"a": 1}'.encode("utf-16")), ("vae/config.json", "not UTF-8")),
    "config not JSON": (_write("vae/config.json", b"latent_channels = 4\n"), ("vae/config.json", "not valid JSON")),
    "model_index not UTF-8": (_write("model_index.json", b"\xff\xfe\x00"), ("model_index.json", "not UTF-8")),
    "config nested too deep": (_write("transformer/config.json", b"[" * 100_000), ("transformer/config.json",
                                                                                   "not a usable JSON config")),
    "config a directory": (_directory("scheduler/scheduler_config.json"),
                           ("scheduler/scheduler_config.json", "is a directory")),
    "text config a list": (_json_edit(TE_CONFIG, "text_config", value=[1, 2]),
                           (TE_CONFIG, "'text_config' must be a JSON object", "[1, 2]")),
    "text config layers a string": (_json_edit(TE_CONFIG, "text_config", "num_hidden_layers", value="36"),
                                    (TE_CONFIG, "'num_hidden_layers' must be int, got '36'")),
    "text config hidden a string": (_json_edit(TE_CONFIG, "text_config", "hidden_size", value="32"),
                                    (TE_CONFIG, "'hidden_size' must be int, got '32'")),
    "text config heads zero": (_json_edit(TE_CONFIG, "text_config", "num_attention_heads", value=0),
                               (TE_CONFIG, "'num_attention_heads' must be positive")),
    "rope parameters a list": (_json_edit(TE_CONFIG, "text_config", "rope_parameters", value=[5e6]),
                               (TE_CONFIG, "'rope_parameters' must be a JSON object")),
    "rope theta a string": (_json_edit(TE_CONFIG, "text_config", "rope_parameters", "rope_theta", value="big"),
                            (TE_CONFIG, "'rope_theta' must be float, got 'big'")),
    "mrope section an int": (_json_edit(TE_CONFIG, "text_config", "rope_parameters", "mrope_section", value=5),
                             (TE_CONFIG, "'mrope_section' must be tuple, got 5")),
    "text config a JSON array": (_write(TE_CONFIG, b"[1, 2, 3]"),
                                 (TE_CONFIG, "expected a JSON object, got a JSON list")),
    "vae decoder channels an int": (_json_edit("vae/config.json", "decoder_block_out_channels", value=7),
                                    ("vae/config.json", "'decoder_block_out_channels' must be a list of ints")),
    "vae channels strings": (_json_edit("vae/config.json", "block_out_channels", value=["a", "b", "c", "d"]),
                             ("vae/config.json", "'block_out_channels' must be a list of ints")),
    "vae block types nested": (_json_edit("vae/config.json", "up_block_types", value=[["x"]] * 4),
                               ("vae/config.json", "'up_block_types' must be a list of strings")),
    "weights truncated": (_header(DIT, lambda d, n: d[: len(d) // 2]), (DIT, "not a readable safetensors file",
                                                                          "re-download")),
    "header truncated": (_header(TEXT, lambda d, n: d[: 8 + n // 2]), (TEXT, "invalid header length")),
    "header length past EOF": (_header(UNCOND, lambda d, n: struct.pack("<Q", 10 * len(d)) + d[8:]),
                               (UNCOND, "invalid header length")),
    "header length huge": (_header(VAE, lambda d, n: struct.pack("<Q", 2**63) + d[8:]), (VAE, "header too large")),
    "header not JSON": (_header(DIT, lambda d, n: d[:8] + b"x" * n + d[8 + n :]), (DIT, "invalid JSON in header")),
    "header not UTF-8": (_header(DIT, lambda d, n: d[:8] + b"\xff" * n + d[8 + n :]), (DIT, "invalid UTF-8")),
    "header a JSON array": (_header(TEXT, lambda d, n: d[:8] + b"[]".ljust(n) + d[8 + n :]), (TEXT, "invalid JSON")),
    "weights empty": (_write(VAE, b""), (VAE, "header too small")),
    "weight file a directory": (_directory(UNCOND), (UNCOND, "is a directory, expected a file")),
    "index not UTF-8": (_index(VAE, b"\xff\xfe"), (VAE + ".index.json", "not a safetensors index")),
    "index weight_map a list": (_index(VAE, b'{"weight_map": ["a"]}'), (VAE + ".index.json", "'weight_map'")),
    "index file names ints": (_index(VAE, b'{"weight_map": {"a": 1}}'), (VAE + ".index.json", "file names")),
    "index shard a directory": (_index(VAE, b'{"weight_map": {"a": "shard-1.safetensors"}}', shard_dir=True),
                                ("vae/shard-1.safetensors", "is a directory, not a weight file")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_configs_and_weight_files(shared: Path, tiny_dir: Path, capsys, case: str) -> None:
    edit, needles = UNREADABLE[case]
    component = needles[0].split("/")[0]  # the first needle is the file that was broken
    edit(shared)
    try:
        _refused(["check", shared], capsys, [shared], *needles)
    finally:
        _restore(shared, tiny_dir, component)


# --- 18. calibrations without a DiT's table ----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["V4_INSTANT_8", "V4_FAST_20"])
def test_calibrate_refuses_a_cond_only_preset(shared: Path, tmp_path: Path, capsys, preset: str) -> None:
    out = tmp_path / "cal" / "x.json"
    args = ["calibrate", "--model", shared, "--out", out, "--preset", preset, "--resolution", "256x256"]
    _refused(args, capsys, [shared, tmp_path], f"--preset {preset}", "dit_uncond", "never runs", *GUIDED)
    assert not out.exists() and not out.parent.exists()


def _calibration(shared: Path, path: Path, edit: Callable[[dict], None], preset: str = "V4_TURBO_12") -> Path:  # type: ignore[type-arg]
    """A calibration file for ``shared`` with every amax 1.0 (no model run), then ``edit``ed as JSON."""
    from ideogram_trt.core.components import Component
    from ideogram_trt.export.calibration import CALIBRATED_PARTS, Calibration, amax_names
    from ideogram_trt.export.recipes import Recipe, quant_plan
    from ideogram_trt.model.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(shared)
    amax = {}
    for graph in ("text_encoder", "dit_cond", "dit_uncond"):
        plan = quant_plan(Component(graph), Recipe.FP8, quantize_attention=True, quantize_text_encoder=True)
        amax[graph] = {name: 1.0 for name in amax_names(checkpoint, graph, plan)}
    Calibration(checkpoint.fingerprint(CALIBRATED_PARTS), {"preset": preset}, amax).save(path)
    body = json.loads(path.read_text())
    edit(body)
    path.write_text(json.dumps(body))
    return path


def _drop(graph: str, name: str | None = None) -> Callable[[dict], None]:  # type: ignore[type-arg]
    def edit(body: dict) -> None:  # type: ignore[type-arg]
        if name is None:
            del body["amax"][graph]
        else:
            del body["amax"][graph][name]

    return edit


@pytest.mark.parametrize(
    ("edit", "components", "extra", "needles"),
    [
        (_drop("dit_uncond"), "dit_uncond", [], ("no amax table for the dit_uncond graph", *GUIDED)),
        (_drop("dit_uncond"), "dit_cond,dit_uncond", [], ("dit_uncond", "made with preset V4_TURBO_12")),
        (_set("amax", "dit_uncond", value={}), "dit_uncond", [], ("no amax table for the dit_uncond graph",)),
        (_drop("dit_cond"), "dit_cond", [], ("no amax table for the dit_cond graph", "--recipe fp8-wo")),
        (_drop("dit_cond"), "dit_cond_masked", [], ("no amax table for the dit_cond graph",)),
        (_drop("dit_uncond", "layers.1.feed_forward.w2"), "dit_uncond", [],
         ("dit_uncond amax table lacks 1 of the 10", "'layers.1.feed_forward.w2'")),
        (_drop("dit_cond", "layers.0.attention.k"), "dit_cond", ["--quantize-attention"],
         ("dit_cond amax table lacks 1 of the 16", "'layers.0.attention.k'")),
        (_drop("text_encoder"), "text_encoder", ["--quantize-text-encoder"], ("the text_encoder graph",)),
        (_set("amax", "dit_uncond", "layers.0.attention.o", value=NAN), "dit_cond", [],
         ("amax['dit_uncond']['layers.0.attention.o'] is nan", "finite")),
        (_set("amax", "dit_cond", "layers.0.attention.qkv", value=-1.0), "dit_cond", [], ("is -1.0",)),
    ],
)  # fmt: skip
def test_export_names_the_graph_a_calibration_lacks(
    shared: Path, tmp_path: Path, capsys, edit, components: str, extra: list[str], needles: tuple[str, ...]
) -> None:
    calibration = _calibration(shared, tmp_path / "cal.json", edit)
    out = tmp_path / "onnx"
    args = ["export", "--model", shared, "--out", out, "--recipe", "fp8", "--calibration", calibration]
    _refused([*args, "--components", components, *extra], capsys, [shared, tmp_path], str(calibration), *needles)
    assert not out.exists()


def test_build_engines_names_the_missing_table(shared: Path, tmp_path: Path, capsys) -> None:
    """The repro: build-engines --recipe fp8 with both DiTs and a calibration without dit_uncond."""
    calibration = _calibration(shared, tmp_path / "cal.json", _drop("dit_uncond"), preset="V4_INSTANT_8")
    args = ["build-engines", "--model", shared, "--out", tmp_path / "engines", "--recipe", "fp8"]
    args += ["--compute-capability", "8.9", "--buckets", "256x256"]
    line = _refused([*args, "--calibration", calibration], capsys, [shared, tmp_path], "dit_uncond", *GUIDED)
    assert "V4_INSTANT_8" in line


def test_cond_only_presets_still_calibrate_a_distilled_checkpoint(shared: Path, tiny_dir: Path) -> None:
    """The refusal is for checkpoints with an unconditional DiT: a CFG-distilled one (none) keeps INSTANT/FAST,
    and a guided preset is refused there as before."""
    from ideogram_trt.core.errors import InputError
    from ideogram_trt.export.calibration import check_preset
    from ideogram_trt.model.checkpoint import open_checkpoint

    shutil.rmtree(shared / "unconditional_transformer")
    _edit_json(shared / "model_index.json", lambda index: index.pop("unconditional_transformer"))
    try:
        distilled = open_checkpoint(shared)
        assert not distilled.has_unconditional
        assert check_preset(distilled, "V4_INSTANT_8").steps == 8
        with pytest.raises(InputError, match="V4_TURBO_12 needs the unconditional DiT"):
            check_preset(distilled, "V4_TURBO_12")
    finally:
        _restore(shared, tiny_dir, "unconditional_transformer", "model_index.json")
