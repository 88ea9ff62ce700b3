"""Open an Ideogram 4 checkpoint folder — the official FP8 release layout or a diffusers-layout bf16 repack —
validate every config and tensor header up front, and hand out weights in the native (release) key names.

Folder layout (docs/MODEL.md §1.2): model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/,
unconditional_transformer/ (absent in CFG-distilled checkpoints), vae/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ideogram_trt.core.components import Part
from ideogram_trt.core.errors import CheckpointError, ConfigError
from ideogram_trt.model.configs import (
    DiTConfig,
    SchedulerConfig,
    TextEncoderConfig,
    VAEConfig,
    read_json,
)
from ideogram_trt.model.fingerprint import combined_digest, folder_digest
from ideogram_trt.model.finite import check_scales
from ideogram_trt.model.layout import (
    TEXT_IGNORED_PREFIXES,
    TEXT_PREFIX,
    Layout,
    check_layer_count,
    check_tensors,
    detect_dit_layout,
    dit_expected,
    text_encoder_expected,
)
from ideogram_trt.model.safetensors_folder import SafetensorsFolder

PIPELINE_CLASS = "Ideogram4Pipeline"
# Folder names of the release layout (docs/MODEL.md §1.2); those holding graph weights are core.components.Part.
TRANSFORMER = Part.TRANSFORMER.value
UNCONDITIONAL_TRANSFORMER = Part.UNCONDITIONAL_TRANSFORMER.value
TEXT_ENCODER = Part.TEXT_ENCODER.value
TOKENIZER = "tokenizer"
VAE = Part.VAE.value
SCHEDULER = "scheduler"
DIT_COMPONENTS = (TRANSFORMER, UNCONDITIONAL_TRANSFORMER)
WEIGHT_STEMS = {TRANSFORMER: "diffusion_pytorch_model", UNCONDITIONAL_TRANSFORMER: "diffusion_pytorch_model"}
WEIGHT_STEMS |= {VAE: "diffusion_pytorch_model", TEXT_ENCODER: "model"}

# VAE tensors the decode path reads; the encoder side may be present and is ignored.
VAE_IGNORED_PREFIXES = ("encoder.", "quant_conv.", "bn.num_batches_tracked")


@dataclass(frozen=True)
class Checkpoint:
    root: Path
    transformer: DiTConfig
    unconditional_transformer: DiTConfig | None
    text_encoder: TextEncoderConfig
    vae: VAEConfig
    scheduler: SchedulerConfig
    dit_layouts: dict[str, Layout]
    text_encoder_fp8: bool

    def folder(self, component: str) -> Path:
        return self.root / component

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER

    @property
    def has_unconditional(self) -> bool:
        return self.unconditional_transformer is not None

    def digest(self, component: str) -> str:
        """Content hash of one component folder (sha256, cached by file stat)."""
        return folder_digest(self.folder(component))

    def fingerprint(self, components: tuple[str, ...]) -> str:
        """One hash over the given component folders: what a graph or a calibration file depends on."""
        return combined_digest({name: self.digest(name) for name in components if self.folder(name).is_dir()})

    def dit_config(self, component: str) -> DiTConfig:
        config = self.transformer if component == TRANSFORMER else self.unconditional_transformer
        if config is None:
            raise CheckpointError(f"{self.root}: no {component}/ in this checkpoint")
        return config

    def weights(self, component: str) -> SafetensorsFolder:
        return SafetensorsFolder(self.folder(component), WEIGHT_STEMS[component])

    def dit_state(self, component: str, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The DiT's tensors under native keys; FP8 weights and their scales as stored.

        ``keys`` picks tensors that are named alike in both layouts (not the attention weights)."""
        self.dit_config(component)
        folder = self.weights(component)
        state = dict(folder.load(None if keys is None else [k for k in keys if k in folder.info]))
        if self.dit_layouts[component] is Layout.DIFFUSERS:
            state = diffusers_to_native_dit(state)
        return state

    def text_encoder_state(self) -> dict[str, torch.Tensor]:
        """The language model's tensors without the ``language_model.`` prefix; FP8 weights as stored."""
        folder = self.weights(TEXT_ENCODER)
        keys = [k for k in folder.info if k.startswith(TEXT_PREFIX)]
        return {k[len(TEXT_PREFIX) :]: v for k, v in folder.load(keys)}

    def vae_state(self) -> dict[str, torch.Tensor]:
        folder = self.weights(VAE)
        keys = [k for k in folder.info if not k.startswith(VAE_IGNORED_PREFIXES)]
        return dict(folder.load(keys))


def diffusers_to_native_dit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers keys → release keys: ``to_q|to_k|to_v`` fused into ``qkv`` (dim 0), ``to_out.0`` → ``o``."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if ".attention.to_" not in key:
            out[key] = tensor
            continue
        prefix, name = key.split(".attention.", 1)
        if name == "to_out.0.weight":
            out[f"{prefix}.attention.o.weight"] = tensor
        elif name == "to_q.weight":
            parts = [state[f"{prefix}.attention.to_{p}.weight"] for p in "qkv"]
            out[f"{prefix}.attention.qkv.weight"] = torch.cat(parts, dim=0)
    return out


def native_to_diffusers_dit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release keys → diffusers keys (floating weights only: dequantize first)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(".attention.qkv.weight"):
            prefix = key[: -len("qkv.weight")]
            for name, part in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0), strict=True):
                out[f"{prefix}{name}.weight"] = part.contiguous()
        elif key.endswith(".attention.o.weight"):
            out[key[: -len("o.weight")] + "to_out.0.weight"] = tensor
        else:
            out[key] = tensor
    return out


def _require_folder(root: Path, component: str) -> Path:
    folder = root / component
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: missing; an Ideogram 4 checkpoint needs a {component}/ folder")
    return folder


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint folder: configs, cross-component sizes, every tensor header and every FP8
    weight_scale (finite and positive; the whole-weight NaN scan is ``model.finite.scan_weights``, run by
    ``ideogram-trt check``)."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory (give the checkpoint folder holding model_index.json)")
    index = read_json(root / "model_index.json")
    if index.get("_class_name") != PIPELINE_CLASS:
        raise CheckpointError(
            f"{root / 'model_index.json'}: _class_name is {index.get('_class_name')!r}, expected {PIPELINE_CLASS!r}"
        )
    for component in (TRANSFORMER, TEXT_ENCODER, TOKENIZER, VAE, SCHEDULER):
        _require_folder(root, component)
    has_uncond = (root / UNCONDITIONAL_TRANSFORMER).is_dir()
    if index.get(UNCONDITIONAL_TRANSFORMER) and not has_uncond:
        _require_folder(root, UNCONDITIONAL_TRANSFORMER)

    def config_of(component: str, name: str = "config.json") -> tuple[dict, str]:
        file = root / component / name
        return read_json(file), str(file)

    dit_configs = {TRANSFORMER: DiTConfig.from_dict(*config_of(TRANSFORMER))}
    if has_uncond:
        dit_configs[UNCONDITIONAL_TRANSFORMER] = DiTConfig.from_dict(*config_of(UNCONDITIONAL_TRANSFORMER))
    text = TextEncoderConfig.from_dict(*config_of(TEXT_ENCODER))
    vae = VAEConfig.from_dict(*config_of(VAE))
    scheduler = SchedulerConfig.from_dict(*config_of(SCHEDULER, "scheduler_config.json"))

    for component, cfg in dit_configs.items():
        source = str(root / component / "config.json")
        if cfg.llm_features_dim != text.features_dim:
            raise ConfigError(
                f"{source}: llm_features_dim is {cfg.llm_features_dim}, but the text encoder gives "
                f"13 taps x {text.hidden_size} = {text.features_dim} (docs/MODEL.md §3.3)"
            )
        if cfg.in_channels != vae.packed_channels:
            raise ConfigError(
                f"{source}: in_channels is {cfg.in_channels}, but the VAE packs 2x2 x {vae.latent_channels} = "
                f"{vae.packed_channels} channels per token"
            )
    if has_uncond and dit_configs[UNCONDITIONAL_TRANSFORMER].hidden_size != dit_configs[TRANSFORMER].hidden_size:
        raise ConfigError(f"{root}: the two DiTs have different hidden sizes")

    layouts: dict[str, Layout] = {}
    for component, cfg in dit_configs.items():
        folder = SafetensorsFolder(root / component, WEIGHT_STEMS[component])
        layout = detect_dit_layout(folder.info, folder.source)
        layouts[component] = layout
        config_source = str(root / component / "config.json")
        check_layer_count(folder.info, "layers.", cfg.num_layers, "num_layers", folder.source, config_source)
        check_tensors(
            folder.info,
            dit_expected(cfg, layout, conditional=component == TRANSFORMER),
            folder.source,
            config_source,
            require_fp8=False if layout is Layout.DIFFUSERS else None,
        )
        check_scales(folder)  # a few MB: NaN/Inf/zero/negative scales make black images (model/finite.py)

    te_folder = SafetensorsFolder(root / TEXT_ENCODER, WEIGHT_STEMS[TEXT_ENCODER])
    te_source = str(root / TEXT_ENCODER / "config.json")
    layers_prefix = TEXT_PREFIX + "layers."
    check_layer_count(
        te_folder.info, layers_prefix, text.num_hidden_layers, "num_hidden_layers", te_folder.source, te_source
    )
    check_tensors(
        te_folder.info,
        text_encoder_expected(text),
        te_folder.source,
        te_source,
        require_fp8=text.fp8_weight_only,
        ignored_prefixes=TEXT_IGNORED_PREFIXES,
    )
    check_scales(te_folder, TEXT_IGNORED_PREFIXES)
    _check_vae_tensors(root, vae)

    return Checkpoint(
        root=root,
        transformer=dit_configs[TRANSFORMER],
        unconditional_transformer=dit_configs.get(UNCONDITIONAL_TRANSFORMER),
        text_encoder=text,
        vae=vae,
        scheduler=scheduler,
        dit_layouts=layouts,
        text_encoder_fp8=text.fp8_weight_only,
    )


def _check_vae_tensors(root: Path, config: VAEConfig) -> None:
    from ideogram_trt.model.layout import Expected
    from ideogram_trt.model.vae_decoder import VaeDecoder

    folder = SafetensorsFolder(root / VAE, WEIGHT_STEMS[VAE])
    with torch.device("meta"):
        module = VaeDecoder(config)
    expected = {k: Expected(tuple(v.shape)) for k, v in module.state_dict().items() if not k.startswith("latent_")}
    expected["bn.running_mean"] = Expected((config.packed_channels,))
    expected["bn.running_var"] = Expected((config.packed_channels,))
    check_tensors(
        folder.info,
        expected,
        folder.source,
        str(root / VAE / "config.json"),
        require_fp8=False,
        ignored_prefixes=VAE_IGNORED_PREFIXES,
    )
