"""Typed configs read from a checkpoint's ``config.json`` files, with the released values as defaults
(docs/MODEL.md §3.1, §4.1, §6). Every value is checked on read; a bad one raises ``ConfigError`` naming the file,
key and fix."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ideogram_trt.core.errors import ConfigError

# docs/MODEL.md §3.3: decoder layers whose outputs feed the DiT, interleaved channel-wise (c = h·13 + k).
TEXT_TAP_LAYERS: tuple[int, ...] = (0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 35)

T = TypeVar("T")


class _NonFinite:
    """A JSON number that is not finite: Python's json reads NaN, Infinity, -Infinity (and 1e999 as inf)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _find_non_finite(value: Any, where: str = "") -> tuple[str, str] | None:
    if isinstance(value, _NonFinite):
        return where, value.text
    if isinstance(value, dict):
        children = [(f"{where}.{key}" if where else key, item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for child_where, item in children:
        found = _find_non_finite(item, child_where)
        if found:
            return found
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A config file as a JSON object; refuses what is not UTF-8 JSON, and NaN/Infinity anywhere in it."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a JSON file")
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}): a config must be UTF-8 "
            "JSON; re-download or re-save it"
        ) from exc
    try:
        value = json.loads(text, parse_constant=_NonFinite, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits; arrays nested thousands deep
        raise ConfigError(f"{path}: not a usable JSON config ({str(exc)[:120]})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object, got a JSON {type(value).__name__}")
    found = _find_non_finite(value)
    if found:
        raise ConfigError(
            f"{path}: {found[0]!r} is {found[1]}, not a finite number (a NaN or infinite value makes black "
            "images): write a finite value"
        )
    return value


def _show(value: object) -> str:
    """``repr`` cut short: a config may hold a 4000-digit number."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"


def _get(raw: dict[str, Any], key: str, kind: type[T], default: T, source: str) -> T:
    value = raw.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{source}: {key!r} is {_show(value)}, too large for a float") from None
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{source}: {key!r} must be {kind.__name__}, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {key!r} must be a finite number, got {value}")
    return value  # type: ignore[return-value]


def _check_mrope(section: tuple[int, ...], head_dim: int, head_key: str, source: str) -> None:
    """Interleaved MRoPE (docs/MODEL.md §4.7) gives frequencies 1, 4, 7, … (section[1] of them) to h and 2, 5, 8, …
    (section[2]) to w; every other frequency is t's. Those indices must exist among the head_dim/2 frequencies.
    (The release DiT: (24, 20, 20) over 128 frequencies; Qwen3-VL's text model: the same over 64.)"""
    if len(section) != 3 or not all(isinstance(s, int) and s >= 0 for s in section):
        raise ConfigError(f"{source}: 'mrope_section' must be three non-negative ints, got {list(section)}")
    if head_dim % 2 or 3 * max(section[1], section[2]) > head_dim // 2:
        raise ConfigError(
            f"{source}: 'mrope_section' {list(section)} needs {3 * max(section[1], section[2])} rotary frequencies "
            f"for its h/w axes, but {head_key} {head_dim} has {head_dim // 2} (docs/MODEL.md §4.7)"
        )


# The largest value accepted for every size a config declares (issue 12): generous (8x the release or more; the
# release values are the dataclass defaults below) but finite, so a typo such as ``num_layers: 10**12`` is refused
# at once instead of enumerating 10**12 tensor names. Floats must also be finite (``read_json``, ``_get``).
MAX_LAYERS = 256  # DiT blocks (release 34), text-encoder decoder layers (36)
MAX_WIDTH = 65536  # hidden sizes, head dims, channels, the AdaLN width (release at most 4608)
MAX_HEADS = 1024  # attention and key/value heads (release 18 and 32/8)
MAXIMA: dict[str, int | float] = {
    "num_layers": MAX_LAYERS,
    "num_hidden_layers": MAX_LAYERS,
    "in_channels": MAX_WIDTH,
    "attention_head_dim": MAX_WIDTH,
    "head_dim": MAX_WIDTH,
    "hidden_size": MAX_WIDTH,  # the DiT's is attention_head_dim x num_attention_heads
    "adaln_dim": MAX_WIDTH,
    "latent_channels": MAX_WIDTH,
    "block_out_channels": MAX_WIDTH,  # each entry
    "decoder_block_out_channels": MAX_WIDTH,
    "intermediate_size": 4 * MAX_WIDTH,  # SwiGLU widths (release 12288)
    "llm_features_dim": len(TEXT_TAP_LAYERS) * MAX_WIDTH,  # 13 taps x the text hidden size (release 53248)
    "num_attention_heads": MAX_HEADS,
    "num_key_value_heads": MAX_HEADS,
    "vocab_size": 2**20,  # release 151936
    "max_position_embeddings": 2**24,  # release 262144
    "layers_per_block": 64,  # VAE resnets per block (release 2)
    "norm_num_groups": MAX_HEADS,  # release 32
    "rope_theta": 1e12,  # release 5e6
    "norm_eps": 1.0,  # epsilons (release 1e-5, 1e-6, 1e-4)
    "rms_norm_eps": 1.0,
    "batch_norm_eps": 1.0,
}


def _positive(source: str, **values: int | float) -> None:
    """Each value positive and at most its ``MAXIMA`` bound."""
    for key, value in values.items():
        if value <= 0:
            raise ConfigError(f"{source}: {key!r} must be positive, got {_show(value)}")
        bound = MAXIMA.get(key)
        if bound is not None and value > bound:
            shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
            raise ConfigError(
                f"{source}: {key!r} is {_show(value)}, above the largest value ideogram-trt accepts "
                f"({shown}; see MAXIMA in ideogram_trt/model/configs.py): fix the config"
            )


@dataclass(frozen=True)
class DiTConfig:
    """``transformer/config.json`` (diffusers ``Ideogram4Transformer2DModel`` keys; docs/MODEL.md §4.1)."""

    in_channels: int = 128
    num_layers: int = 34
    attention_head_dim: int = 256
    num_attention_heads: int = 18
    intermediate_size: int = 12288
    adaln_dim: int = 512
    llm_features_dim: int = 53248
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    norm_eps: float = 1e-5

    @property
    def hidden_size(self) -> int:
        return self.attention_head_dim * self.num_attention_heads

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> DiTConfig:
        d = cls()
        cfg = cls(
            in_channels=_get(raw, "in_channels", int, d.in_channels, source),
            num_layers=_get(raw, "num_layers", int, d.num_layers, source),
            attention_head_dim=_get(raw, "attention_head_dim", int, d.attention_head_dim, source),
            num_attention_heads=_get(raw, "num_attention_heads", int, d.num_attention_heads, source),
            intermediate_size=_get(raw, "intermediate_size", int, d.intermediate_size, source),
            adaln_dim=_get(raw, "adaln_dim", int, d.adaln_dim, source),
            llm_features_dim=_get(raw, "llm_features_dim", int, d.llm_features_dim, source),
            rope_theta=_get(raw, "rope_theta", float, d.rope_theta, source),
            mrope_section=_get(raw, "mrope_section", tuple, d.mrope_section, source),  # type: ignore[arg-type]
            norm_eps=_get(raw, "norm_eps", float, d.norm_eps, source),
        )
        _positive(
            source,
            in_channels=cfg.in_channels,
            num_layers=cfg.num_layers,
            attention_head_dim=cfg.attention_head_dim,
            num_attention_heads=cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size,
            adaln_dim=cfg.adaln_dim,
            llm_features_dim=cfg.llm_features_dim,
            rope_theta=cfg.rope_theta,
            norm_eps=cfg.norm_eps,
        )
        if cfg.hidden_size > MAX_WIDTH:
            raise ConfigError(
                f"{source}: 'attention_head_dim' x 'num_attention_heads' = {cfg.hidden_size}, above the largest "
                f"hidden size ideogram-trt accepts ({MAX_WIDTH}): fix the config"
            )
        _check_mrope(cfg.mrope_section, cfg.attention_head_dim, "attention_head_dim", source)
        if cfg.in_channels % 4:
            raise ConfigError(f"{source}: 'in_channels' ({cfg.in_channels}) must be 4 x the VAE latent channels")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mrope_section"] = list(self.mrope_section)
        return {"_class_name": "Ideogram4Transformer2DModel", "_diffusers_version": "0.42.1", **out}


@dataclass(frozen=True)
class TextEncoderConfig:
    """The Qwen3-VL text config inside ``text_encoder/config.json`` (docs/MODEL.md §3.1)."""

    vocab_size: int = 151936
    hidden_size: int = 4096
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 12288
    rms_norm_eps: float = 1e-6
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    max_position_embeddings: int = 262144
    fp8_weight_only: bool = True
    # The full config.json (with vision_config), kept so the diffusers-layout conversion can rebuild the model.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def features_dim(self) -> int:
        """Width of the interleaved tap features: hidden × 13 (53,248 in the release)."""
        return self.hidden_size * len(TEXT_TAP_LAYERS)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> TextEncoderConfig:
        text = raw.get("text_config", raw)
        if not isinstance(text, dict):
            raise ConfigError(
                f"{source}: 'text_config' must be a JSON object (Qwen3-VL's text model config), got {_show(text)}"
            )
        d = cls()
        rope_key = "rope_parameters" if text.get("rope_parameters") else "rope_scaling"
        rope = text.get(rope_key) or {}
        if not isinstance(rope, dict):
            raise ConfigError(f"{source}: {rope_key!r} must be a JSON object, got {_show(rope)}")
        theta_raw = {"rope_theta": rope.get("rope_theta", text.get("rope_theta", d.rope_theta))}
        theta = _get(theta_raw, "rope_theta", float, d.rope_theta, source)
        section = _get(rope, "mrope_section", tuple, d.mrope_section, source)
        if text.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"{source}: 'hidden_act' must be 'silu' (Qwen3-VL), got {_show(text.get('hidden_act'))}")
        if text.get("attention_bias", False):
            raise ConfigError(f"{source}: 'attention_bias' must be false (Qwen3-VL has no attention biases)")
        hidden = _get(text, "hidden_size", int, d.hidden_size, source)
        heads = _get(text, "num_attention_heads", int, d.num_attention_heads, source)
        _positive(source, hidden_size=hidden, num_attention_heads=heads)
        head_default = hidden // heads
        cfg = cls(
            vocab_size=_get(text, "vocab_size", int, d.vocab_size, source),
            hidden_size=hidden,
            num_hidden_layers=_get(text, "num_hidden_layers", int, d.num_hidden_layers, source),
            num_attention_heads=heads,
            num_key_value_heads=_get(text, "num_key_value_heads", int, d.num_key_value_heads, source),
            head_dim=_get(text, "head_dim", int, head_default, source),
            intermediate_size=_get(text, "intermediate_size", int, d.intermediate_size, source),
            rms_norm_eps=_get(text, "rms_norm_eps", float, d.rms_norm_eps, source),
            rope_theta=theta,
            mrope_section=section,  # type: ignore[arg-type]
            max_position_embeddings=_get(text, "max_position_embeddings", int, d.max_position_embeddings, source),
            fp8_weight_only=_get(raw, "ideogram_fp8_weight_only", bool, False, source),
            raw=raw,
        )
        _positive(
            source,
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            head_dim=cfg.head_dim,
            intermediate_size=cfg.intermediate_size,
            rms_norm_eps=cfg.rms_norm_eps,
            rope_theta=cfg.rope_theta,
            num_hidden_layers=max(cfg.num_hidden_layers, 1),  # too few: the tap-layer message below
            max_position_embeddings=max(cfg.max_position_embeddings, 1),
        )
        if cfg.num_hidden_layers <= max(TEXT_TAP_LAYERS):
            raise ConfigError(
                f"{source}: 'num_hidden_layers' is {cfg.num_hidden_layers}; the DiT taps layer "
                f"{max(TEXT_TAP_LAYERS)}, so it needs at least {max(TEXT_TAP_LAYERS) + 1} (docs/MODEL.md §3.3)"
            )
        if cfg.num_attention_heads % cfg.num_key_value_heads:
            raise ConfigError(f"{source}: 'num_attention_heads' must be a multiple of 'num_key_value_heads'")
        _check_mrope(cfg.mrope_section, cfg.head_dim, "head_dim", source)
        if cfg.max_position_embeddings < 2048:
            raise ConfigError(f"{source}: 'max_position_embeddings' must cover the 2048-token prompt limit")
        return cfg

    def text_config_dict(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.Qwen3VLTextConfig``."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "attention_bias": False,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": self.rope_theta,
                "mrope_section": list(self.mrope_section),
                "mrope_interleaved": True,
            },
        }


@dataclass(frozen=True)
class VAEConfig:
    """``vae/config.json`` of ``AutoencoderKLFlux2`` (the FLUX.2 VAE; docs/MODEL.md §6)."""

    latent_channels: int = 32
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4
    decoder_block_out_channels: tuple[int, ...] | None = None
    layers_per_block: int = 2
    norm_num_groups: int = 32
    act_fn: str = "silu"
    mid_block_add_attention: bool = True
    use_post_quant_conv: bool = True
    batch_norm_eps: float = 1e-4
    patch_size: tuple[int, int] = (2, 2)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def packed_channels(self) -> int:
        return self.latent_channels * self.patch_size[0] * self.patch_size[1]

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> VAEConfig:
        d = cls()
        dec = raw.get("decoder_block_out_channels")
        if dec is not None and not isinstance(dec, list):
            raise ConfigError(
                f"{source}: 'decoder_block_out_channels' must be a list of ints or null, got {_show(dec)}"
            )
        channel_lists = {"block_out_channels": raw.get("block_out_channels", []), "decoder_block_out_channels": dec}
        for key, value in channel_lists.items():
            value = value or []
            if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
                raise ConfigError(f"{source}: {key!r} must be a list of ints, got {_show(value)}")
            for channels in value:
                _positive(source, **{key: channels})
        if not all(isinstance(t, str) for t in _get(raw, "up_block_types", tuple, d.up_block_types, source)):
            raise ConfigError(f"{source}: 'up_block_types' must be a list of strings")
        cfg = cls(
            latent_channels=_get(raw, "latent_channels", int, d.latent_channels, source),
            block_out_channels=tuple(_get(raw, "block_out_channels", tuple, d.block_out_channels, source)),
            decoder_block_out_channels=tuple(dec) if dec else None,
            up_block_types=tuple(_get(raw, "up_block_types", tuple, d.up_block_types, source)),
            layers_per_block=_get(raw, "layers_per_block", int, d.layers_per_block, source),
            norm_num_groups=_get(raw, "norm_num_groups", int, d.norm_num_groups, source),
            act_fn=_get(raw, "act_fn", str, d.act_fn, source),
            mid_block_add_attention=_get(raw, "mid_block_add_attention", bool, d.mid_block_add_attention, source),
            use_post_quant_conv=_get(raw, "use_post_quant_conv", bool, d.use_post_quant_conv, source),
            batch_norm_eps=_get(raw, "batch_norm_eps", float, d.batch_norm_eps, source),
            patch_size=tuple(_get(raw, "patch_size", tuple, d.patch_size, source)),  # type: ignore[arg-type]
            raw=raw,
        )
        _positive(
            source,
            latent_channels=cfg.latent_channels,
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_num_groups,
            batch_norm_eps=cfg.batch_norm_eps,
        )
        if set(cfg.up_block_types) != {"UpDecoderBlock2D"} or len(cfg.up_block_types) != len(
            cfg.decoder_block_out_channels or cfg.block_out_channels
        ):
            raise ConfigError(f"{source}: 'up_block_types' must be one 'UpDecoderBlock2D' per decoder block")
        if cfg.patch_size != (2, 2):
            raise ConfigError(f"{source}: 'patch_size' must be [2, 2] (one DiT token is a 2x2 latent patch)")
        if cfg.downsample != 8:
            raise ConfigError(
                f"{source}: 'block_out_channels' has {len(cfg.block_out_channels)} entries; the FLUX.2 VAE "
                "downsamples 8x, which takes four blocks (docs/MODEL.md §6)"
            )
        for c in cfg.decoder_block_out_channels or cfg.block_out_channels:
            if c <= 0 or c % cfg.norm_num_groups:
                raise ConfigError(
                    f"{source}: block channels {c} must be positive multiples of norm_num_groups "
                    f"({cfg.norm_num_groups})"
                )
        return cfg


@dataclass(frozen=True)
class SchedulerConfig:
    """``scheduler/scheduler_config.json``: only a sigma container, but its shift must be off (docs/MODEL.md §5.1)."""

    shift: float = 1.0
    use_dynamic_shifting: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> SchedulerConfig:
        cfg = cls(
            shift=_get(raw, "shift", float, 1.0, source),
            use_dynamic_shifting=_get(raw, "use_dynamic_shifting", bool, False, source),
        )
        if cfg.shift != 1.0 or cfg.use_dynamic_shifting:
            raise ConfigError(
                f"{source}: the LogitNormal schedule needs shift=1.0 and use_dynamic_shifting=false "
                f"(got shift={cfg.shift}, use_dynamic_shifting={cfg.use_dynamic_shifting}; docs/MODEL.md §5.1)"
            )
        return cfg
