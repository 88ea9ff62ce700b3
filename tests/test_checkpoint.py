"""Checkpoint loading: the release FP8 layout, the diffusers layout, FP8 dequantization, and bad checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ideogram_trt.core.errors import CheckpointError, ConfigError
from ideogram_trt.model.build import load_dit, load_text_encoder
from ideogram_trt.model.checkpoint import open_checkpoint
from ideogram_trt.model.configs import DiTConfig
from ideogram_trt.model.layout import Layout, dit_expected

DIT_FILE = "transformer/diffusion_pytorch_model.safetensors"
TRAINED = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny-shapes"  # docs/TINY_MODEL.md


@pytest.fixture(params=["random", "trained"])
def release_dir(request: pytest.FixtureRequest, tiny_dir: Path) -> Path:
    """Both shipped kinds of tiny checkpoint: make-tiny's random one and the trained one in the repository."""
    return tiny_dir if request.param == "random" else TRAINED


def test_release_layout_tensor_inventory(tiny_dir: Path) -> None:
    """docs/MODEL.md §8.1: native keys, every linear E4M3 [out, in] + F32 weight_scale [out]; 669 tensors at full
    size."""
    assert sum(2 if e.linear else 1 for e in dit_expected(DiTConfig(), Layout.RELEASE, True).values()) == 669
    with safe_open(str(tiny_dir / DIT_FILE), "pt") as f:
        keys = set(f.keys())
        assert "layers.0.attention.qkv.weight" in keys and "layers.0.attention.to_q.weight" not in keys
        for key in keys:
            if key.endswith(".weight") and f.get_slice(key).get_dtype() == "F8_E4M3":
                scale = f.get_slice(key + "_scale")
                assert scale.get_dtype() == "F32" and scale.get_shape() == f.get_slice(key).get_shape()[:1]
    te = tiny_dir / "text_encoder"
    assert json.loads((te / "config.json").read_text())["ideogram_fp8_weight_only"] is True
    with safe_open(str(te / "model.safetensors"), "pt") as f:
        assert f.get_slice("language_model.layers.35.mlp.down_proj.weight").get_dtype() == "F8_E4M3"
    assert sorted(p.name for p in tiny_dir.iterdir()) == [
        "model_index.json", "scheduler", "text_encoder", "tokenizer",
        "transformer", "unconditional_transformer", "vae",
    ]  # fmt: skip


def test_fp8_dequantization_is_bit_identical(release_dir: Path) -> None:
    """Every DiT and text-encoder linear equals w.to(bf16) * scale.to(bf16)[:, None] (docs/MODEL.md §8.2), bit for
    bit."""
    tiny_dir, checkpoint = release_dir, open_checkpoint(release_dir)
    dit = load_dit(checkpoint, "transformer", dtype=torch.bfloat16).state_dict()
    raw = load_file(str(tiny_dir / DIT_FILE))
    checked = 0
    for key, w in raw.items():
        if w.dtype == torch.float8_e4m3fn and key in dit:
            expected = w.to(torch.bfloat16) * raw[key + "_scale"].to(torch.bfloat16)[:, None]
            assert torch.equal(dit[key], expected), key
            checked += 1
    assert checked == 6 * checkpoint.transformer.num_layers + 6  # llm_cond_proj lives in the text encoder

    te = load_text_encoder(checkpoint, dtype=torch.bfloat16).state_dict()
    raw_te = load_file(str(tiny_dir / "text_encoder" / "model.safetensors"))
    proj = (
        raw["llm_cond_proj.weight"].to(torch.bfloat16) * raw["llm_cond_proj.weight_scale"].to(torch.bfloat16)[:, None]
    )
    assert torch.equal(te["llm_cond_proj.weight"], proj)
    for key, w in raw_te.items():
        if w.dtype == torch.float8_e4m3fn:
            expected = w.to(torch.bfloat16) * raw_te[key + "_scale"].to(torch.bfloat16)[:, None]
            assert torch.equal(te[key], expected), key


def test_diffusers_layout_loads_to_the_same_weights(checkpoint, diffusers_dir: Path) -> None:
    repack = open_checkpoint(diffusers_dir)
    assert set(repack.dit_layouts.values()) == {Layout.DIFFUSERS}
    assert not repack.text_encoder_fp8
    for component in ("transformer", "unconditional_transformer"):
        a = load_dit(checkpoint, component, dtype=torch.float32).state_dict()
        b = load_dit(repack, component, dtype=torch.float32).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a = load_text_encoder(checkpoint, dtype=torch.float32).state_dict()
    b = load_text_encoder(repack, dtype=torch.float32).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k != "language_model.norm.weight")


def test_make_tiny_is_deterministic(tmp_path: Path, tiny_dir: Path) -> None:
    from ideogram_trt.cli import main

    assert main(["make-tiny", str(tmp_path / "again"), "--seed", "0"]) == 0
    assert main(["make-tiny", str(tmp_path / "other"), "--seed", "1"]) == 0
    files = sorted(p.relative_to(tiny_dir) for p in tiny_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for rel in files:
        assert (tiny_dir / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    assert (tiny_dir / DIT_FILE).read_bytes() != (tmp_path / "other" / DIT_FILE).read_bytes()


# --- bad checkpoints: one clear message naming the problem and the path ---------------------------------


@pytest.fixture
def broken(tiny_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(tiny_dir, copy)
    return copy


def _rewrite(path: Path, edit) -> None:
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_missing_component_folder(broken: Path) -> None:
    shutil.rmtree(broken / "vae")
    with pytest.raises(CheckpointError, match=r"broken/vae: missing; an Ideogram 4 checkpoint needs a vae/ folder"):
        open_checkpoint(broken)


def test_missing_weight_scale(broken: Path) -> None:
    _rewrite(broken / DIT_FILE, lambda s: s.pop("layers.1.feed_forward.w2.weight_scale"))
    with pytest.raises(CheckpointError, match=r"transformer/diffusion_pytorch_model.safetensors: tensor "
                       r"'layers.1.feed_forward.w2.weight_scale' is missing"):  # fmt: skip
        open_checkpoint(broken)


def test_wrong_shape(broken: Path) -> None:
    def edit(s):
        s["layers.0.attention.o.weight"] = s["layers.0.attention.o.weight"][:, :-1].contiguous()

    _rewrite(broken / DIT_FILE, edit)
    with pytest.raises(
        CheckpointError, match=r"'layers.0.attention.o.weight' has shape \[64, 63\], expected \[64, 64\]"
    ):
        open_checkpoint(broken)


def test_wrong_dtype(broken: Path) -> None:
    def edit(s):
        s["layers.0.ffn_norm1.weight"] = torch.ones(64, dtype=torch.int64)

    _rewrite(broken / DIT_FILE, edit)
    with pytest.raises(CheckpointError, match=r"'layers.0.ffn_norm1.weight' has dtype I64, expected a float type"):
        open_checkpoint(broken)


def test_wrong_scale_dtype(broken: Path) -> None:
    def edit(s):
        s["input_proj.weight_scale"] = s["input_proj.weight_scale"].to(torch.bfloat16)

    _rewrite(broken / DIT_FILE, edit)
    with pytest.raises(CheckpointError, match=r"'input_proj.weight_scale' is BF16 \[64\], expected F32 \[64\]"):
        open_checkpoint(broken)


def test_unknown_tensor(broken: Path) -> None:
    _rewrite(broken / DIT_FILE, lambda s: s.update({"pos_embed.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'pos_embed.weight'"):
        open_checkpoint(broken)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_layers", 0, r"'num_layers' must be positive, got 0"),
        (
            "mrope_section",
            [4, 6, 5],
            r"'mrope_section' \[4, 6, 5\] needs 18 rotary frequencies for its h/w axes, but attention_head_dim 32",
        ),
        ("llm_features_dim", 400, r"llm_features_dim is 400, but the text encoder gives 13 taps x 32 = 416"),
        ("norm_eps", "small", r"'norm_eps' must be float, got 'small'"),
    ],
)
def test_config_value_out_of_range(broken: Path, key: str, value, message: str) -> None:
    config_path = broken / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config[key] = value
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=rf"broken/transformer/config.json: .*{message}"):
        open_checkpoint(broken)


def test_release_configs_validate() -> None:
    """The released values (docs/MODEL.md §3.1, §4.1, §6) pass the checks every checkpoint goes through."""
    from ideogram_trt.model.configs import TextEncoderConfig, VAEConfig

    assert DiTConfig.from_dict(DiTConfig().to_dict(), "release") == DiTConfig()
    assert TextEncoderConfig.from_dict({"text_config": {}}, "release") == TextEncoderConfig(fp8_weight_only=False)
    assert VAEConfig.from_dict({}, "release") == VAEConfig()


def test_text_encoder_needs_36_layers(broken: Path) -> None:
    config_path = broken / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["text_config"]["num_hidden_layers"] = 30
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        ConfigError, match=r"text_encoder/config.json: 'num_hidden_layers' is 30; the DiT taps layer 35"
    ):
        open_checkpoint(broken)


def test_invalid_json_and_wrong_pipeline(broken: Path, tmp_path: Path) -> None:
    (broken / "scheduler" / "scheduler_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"scheduler_config.json: not valid JSON"):
        open_checkpoint(broken)
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(CheckpointError, match=r"_class_name is 'FluxPipeline', expected 'Ideogram4Pipeline'"):
        open_checkpoint(broken)
    with pytest.raises(CheckpointError, match=r"not a directory"):
        open_checkpoint(tmp_path / "nowhere")


def test_cli_reports_one_line_without_traceback(broken: Path) -> None:
    _rewrite(broken / DIT_FILE, lambda s: s.pop("final_layer.linear.weight_scale"))
    result = subprocess.run(
        [sys.executable, "-m", "ideogram_trt", "check", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "final_layer.linear.weight_scale" in lines[0]
    assert result.stdout == ""


def test_cli_check_summarizes_a_good_checkpoint(release_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ideogram_trt", "check", str(release_dir)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "checkpoint OK" in result.stdout and "release" in result.stdout


def test_release_spec_is_the_release() -> None:
    """`make-tiny --config release` writes the released architecture: its configs equal the release defaults
    (which test_release_configs_validate and the FLOP model tie to docs/MODEL.md §3.1, §4.1, §6)."""
    from ideogram_trt.model.configs import TextEncoderConfig, VAEConfig
    from ideogram_trt.model.tiny import TinySpec, dit_config, text_encoder_config_json, vae_config_json

    spec = TinySpec.release()
    spec.validate()
    assert dit_config(spec) == DiTConfig()
    te = TextEncoderConfig.from_dict(text_encoder_config_json(spec, spec.vocab_size), "release")
    assert te == TextEncoderConfig(fp8_weight_only=True)
    assert VAEConfig.from_dict(vae_config_json(spec), "release") == VAEConfig()


def test_partial_make_tiny_writes_the_same_bytes(tmp_path: Path, tiny_dir: Path) -> None:
    """Each weight file has its own random stream: writing components one at a time (how full size fits a
    small disk) gives the bytes a full write gives."""
    from ideogram_trt.cli import main

    out = tmp_path / "vae-only"
    assert main(["make-tiny", str(out), "--components", "vae"]) == 0
    assert not (out / DIT_FILE).exists() and (out / "transformer" / "config.json").exists()
    name = "vae/diffusion_pytorch_model.safetensors"
    assert (out / name).read_bytes() == (tiny_dir / name).read_bytes()
    for rel in ("model_index.json", "transformer/config.json", "text_encoder/config.json"):
        assert (out / rel).read_bytes() == (tiny_dir / rel).read_bytes(), rel

    # The unconditional DiT alone: drawn alongside the conditional one (one stream), written alone.
    out = tmp_path / "uncond-only"
    assert main(["make-tiny", str(out), "--components", "unconditional_transformer"]) == 0
    name = "unconditional_transformer/diffusion_pytorch_model.safetensors"
    assert not (out / DIT_FILE).exists()
    assert (out / name).read_bytes() == (tiny_dir / name).read_bytes()


def test_streamed_safetensors_read_back_exactly(tmp_path: Path) -> None:
    """make-tiny's streaming writer against safetensors' own reader: every dtype of the release, odd sizes
    (unaligned offsets), a scalar and an empty tensor."""
    from ideogram_trt.model.safetensors_stream import SafetensorsStream

    gen = torch.Generator().manual_seed(0)
    tensors = {
        "linear.weight": torch.randn(7, 5, generator=gen).to(torch.float8_e4m3fn),
        "linear.weight_scale": torch.rand(7, generator=gen),
        "norm.weight": torch.randn(3, generator=gen).to(torch.bfloat16),
        "vae.weight": torch.randn(2, 3, 1, 1, generator=gen),
        "half": torch.randn(5, generator=gen).to(torch.float16),
        "count": torch.tensor(1000, dtype=torch.int64),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(4, 6, generator=gen).t(),
    }
    path = tmp_path / "streamed.safetensors"
    with SafetensorsStream(path, tensors, metadata={"format": "pt"}) as out:
        for name, tensor in tensors.items():
            out.add(name, tensor)
    back = load_file(str(path))
    assert back.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        assert torch.equal(back[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}


def test_streamed_safetensors_leaves_nothing_behind_on_errors(tmp_path: Path) -> None:
    """A header that outgrows its room is refused at the tensor that overflows it, not after gigabytes; a
    failed write deletes its file."""
    from ideogram_trt.model.safetensors_stream import SafetensorsStream

    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="outgrows"), SafetensorsStream(path, ["a"]) as out:
        for k in range(100):
            out.add(f"a_longer_name_than_reserved_{k}", torch.zeros(1))
    assert not path.exists()
    with pytest.raises(ValueError, match="twice"), SafetensorsStream(path, ["a"]) as out:
        out.add("a", torch.zeros(1))
        out.add("a", torch.zeros(1))
    assert not path.exists()


def _assert_file_holds(path: Path, drawn: dict[str, torch.Tensor]) -> None:
    written = load_file(str(path))
    assert written.keys() == drawn.keys(), path
    for key, tensor in drawn.items():
        assert written[key].dtype == tensor.dtype, key
        assert torch.equal(written[key].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), key


def test_make_tiny_files_hold_what_was_drawn(tiny_dir: Path) -> None:
    """The streamed weight files against the same draws collected in memory: every tensor, bit for bit, and
    nothing else (the writer, not the draw, is under test; safetensors' reader is the oracle)."""
    from ideogram_trt.model.configs import TextEncoderConfig
    from ideogram_trt.model.layout import text_encoder_expected
    from ideogram_trt.model.tiny import TinySpec, _generator, dit_config, draw_release_states, text_encoder_scale

    spec = TinySpec()
    cond: dict[str, torch.Tensor] = {}
    uncond: dict[str, torch.Tensor] = {}
    expected = dit_expected(dit_config(spec), Layout.RELEASE, conditional=True)
    draw_release_states(expected, _generator(spec, 0, "cpu"), cond.__setitem__, uncond.__setitem__)
    _assert_file_holds(tiny_dir / DIT_FILE, cond)
    _assert_file_holds(tiny_dir / "unconditional_transformer" / "diffusion_pytorch_model.safetensors", uncond)

    te: dict[str, torch.Tensor] = {}
    config = json.loads((tiny_dir / "text_encoder" / "config.json").read_text())
    expected = text_encoder_expected(TextEncoderConfig.from_dict(config, "tiny text encoder"))
    draw_release_states(expected, _generator(spec, 2, "cpu"), te.__setitem__, scale=text_encoder_scale)
    _assert_file_holds(tiny_dir / "text_encoder" / "model.safetensors", te)
