"""What each component's weights must contain, in the release layout and in the diffusers layout (docs/MODEL.md §8.1).

Release ("native") DiT keys fuse attention as ``attention.qkv`` [3d, d] and name the output ``attention.o``;
every linear is an E4M3 ``weight`` with an F32 ``weight_scale`` [out]. The diffusers layout splits
``to_q``/``to_k``/``to_v``, names ``to_out.0`` and stores floating weights. Anything not listed here is refused:
loading what is not understood is how a reference silently computes garbage (docs/ARCHITECTURE.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ideogram_trt.core.errors import CheckpointError
from ideogram_trt.model.configs import DiTConfig, TextEncoderConfig
from ideogram_trt.model.safetensors_folder import FLOAT_DTYPES, FP8_DTYPE_NAME, TensorInfo

SCALE = "_scale"


class Layout(str, Enum):
    RELEASE = "release"  # native keys; FP8 linears (the official ideogram-4-fp8 layout)
    DIFFUSERS = "diffusers"  # diffusers/transformers keys; floating weights (a bf16 repack)


@dataclass(frozen=True)
class Expected:
    shape: tuple[int, ...]
    linear: bool = False  # a linear weight: FP8 with a per-row scale, or floating
    optional: bool = False


def dit_expected(config: DiTConfig, layout: Layout, conditional: bool) -> dict[str, Expected]:
    d, c, a = config.hidden_size, config.in_channels, config.adaln_dim
    f, i, hd = config.llm_features_dim, config.intermediate_size, config.attention_head_dim
    lin, vec = (lambda *s: Expected(s, linear=True)), (lambda *s: Expected(s))
    out: dict[str, Expected] = {
        "input_proj.weight": lin(d, c),
        "input_proj.bias": vec(d),
        "t_embedding.mlp_in.weight": lin(d, d),
        "t_embedding.mlp_in.bias": vec(d),
        "t_embedding.mlp_out.weight": lin(d, d),
        "t_embedding.mlp_out.bias": vec(d),
        "adaln_proj.weight": lin(a, d),
        "adaln_proj.bias": vec(a),
        "embed_image_indicator.weight": vec(2, d),
        "final_layer.linear.weight": lin(c, d),
        "final_layer.linear.bias": vec(c),
        "final_layer.adaln_modulation.weight": lin(d, a),
        "final_layer.adaln_modulation.bias": vec(d),
    }
    # The unconditional DiT has the same class; its text projection is dead (docs/MODEL.md §4.8), so it may be absent.
    out["llm_cond_norm.weight"] = Expected((f,), optional=not conditional)
    out["llm_cond_proj.weight"] = Expected((d, f), linear=True, optional=not conditional)
    out["llm_cond_proj.bias"] = Expected((d,), optional=not conditional)
    for n in range(config.num_layers):
        p = f"layers.{n}."
        if layout is Layout.RELEASE:
            out[p + "attention.qkv.weight"] = lin(3 * d, d)
            out[p + "attention.o.weight"] = lin(d, d)
        else:
            for name in ("to_q", "to_k", "to_v", "to_out.0"):
                out[p + f"attention.{name}.weight"] = lin(d, d)
        out[p + "attention.norm_q.weight"] = vec(hd)
        out[p + "attention.norm_k.weight"] = vec(hd)
        out[p + "feed_forward.w1.weight"] = lin(i, d)
        out[p + "feed_forward.w3.weight"] = lin(i, d)
        out[p + "feed_forward.w2.weight"] = lin(d, i)
        for norm in ("attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2"):
            out[p + f"{norm}.weight"] = vec(d)
        out[p + "adaln_modulation.weight"] = lin(4 * d, a)
        out[p + "adaln_modulation.bias"] = vec(4 * d)
    return out


TEXT_PREFIX = "language_model."
# The vision tower and a generation head may ride along in a Qwen3-VL checkpoint; the text path never uses them.
TEXT_IGNORED_PREFIXES = ("visual.", "model.visual.", "lm_head.")


def text_encoder_expected(config: TextEncoderConfig) -> dict[str, Expected]:
    h, hd, i = config.hidden_size, config.head_dim, config.intermediate_size
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    p0 = TEXT_PREFIX
    out = {
        p0 + "embed_tokens.weight": Expected((config.vocab_size, h)),
        p0 + "norm.weight": Expected((h,), optional=True),  # the final norm is never applied (docs/MODEL.md §3.3)
    }
    for n in range(config.num_hidden_layers):
        p = f"{p0}layers.{n}."
        out[p + "self_attn.q_proj.weight"] = Expected((q, h), linear=True)
        out[p + "self_attn.k_proj.weight"] = Expected((kv, h), linear=True)
        out[p + "self_attn.v_proj.weight"] = Expected((kv, h), linear=True)
        out[p + "self_attn.o_proj.weight"] = Expected((h, q), linear=True)
        out[p + "self_attn.q_norm.weight"] = Expected((hd,))
        out[p + "self_attn.k_norm.weight"] = Expected((hd,))
        out[p + "mlp.gate_proj.weight"] = Expected((i, h), linear=True)
        out[p + "mlp.up_proj.weight"] = Expected((i, h), linear=True)
        out[p + "mlp.down_proj.weight"] = Expected((h, i), linear=True)
        out[p + "input_layernorm.weight"] = Expected((h,))
        out[p + "post_attention_layernorm.weight"] = Expected((h,))
    return out


def check_tensors(
    info: dict[str, TensorInfo],
    expected: dict[str, Expected],
    source: str,
    config_source: str,
    require_fp8: bool | None,
    ignored_prefixes: tuple[str, ...] = (),
) -> None:
    """Refuse a missing, misshapen, mistyped or unknown tensor with one message naming it and the file.

    ``require_fp8``: True — every linear must be FP8 with a scale; False — floating only; None — either.
    """
    for key, want in expected.items():
        got = info.get(key)
        if got is None:
            if want.optional:
                continue
            raise CheckpointError(f"{source}: tensor {key!r} is missing (expected shape {list(want.shape)})")
        if got.shape != want.shape:
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {list(got.shape)}, expected {list(want.shape)} "
                f"from {config_source}"
            )
        scale_key = key + SCALE
        if want.linear and got.dtype == FP8_DTYPE_NAME:
            if require_fp8 is False:
                raise CheckpointError(f"{source}: tensor {key!r} is FP8, but this layout stores floating weights")
            scale = info.get(scale_key)
            if scale is None:
                raise CheckpointError(
                    f"{source}: tensor {scale_key!r} is missing; every FP8 weight needs its F32 per-row scale "
                    "(docs/MODEL.md §8.1)"
                )
            if scale.shape != (want.shape[0],) or scale.dtype != "F32":
                raise CheckpointError(
                    f"{source}: tensor {scale_key!r} is {scale.dtype} {list(scale.shape)}, expected F32 "
                    f"[{want.shape[0]}] (one scale per output row, docs/MODEL.md §8.1)"
                )
            continue
        if got.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{source}: tensor {key!r} has dtype {got.dtype}, expected "
                + ("F8_E4M3 or a float type" if want.linear else "a float type (F32/BF16/F16)")
            )
        if want.linear and require_fp8:
            raise CheckpointError(
                f"{source}: tensor {key!r} is {got.dtype}, but the config declares FP8 weights: store it as "
                "F8_E4M3 with a weight_scale, or drop the FP8 flag from the config"
            )
        if scale_key in info:
            raise CheckpointError(f"{source}: tensor {scale_key!r} scales a {got.dtype} weight (only FP8 has one)")
    known = set(expected) | {k + SCALE for k, v in expected.items() if v.linear}
    for key in info:
        if key not in known and not key.startswith(ignored_prefixes):
            raise CheckpointError(
                f"{source}: unexpected tensor {key!r}: not part of the Ideogram 4 layout for {config_source} "
                "(a different model, or a config that does not match the weights)"
            )


def check_layer_count(
    info: dict[str, TensorInfo], prefix: str, declared: int, key: str, source: str, config_source: str
) -> None:
    """The config's layer count against the ``{prefix}N.`` blocks the weights hold: one message naming both,
    before thousands of per-tensor expectations are built for layers that are not there."""
    present: set[int] = set()
    for name in info:
        if name.startswith(prefix):
            index = name[len(prefix) :].split(".", 1)[0]
            if index.isdecimal():
                present.add(int(index))
    if len(present) != declared:
        held = f"{len(present)} ({prefix}0 … {prefix}{max(present)})" if present else "none"
        raise CheckpointError(
            f"{config_source}: {key!r} is {declared}, but {source} holds {held} layers: fix the config or use "
            "the matching weights"
        )


def detect_dit_layout(info: dict[str, TensorInfo], source: str) -> Layout:
    if "layers.0.attention.qkv.weight" in info:
        return Layout.RELEASE
    if "layers.0.attention.to_q.weight" in info:
        return Layout.DIFFUSERS
    raise CheckpointError(
        f"{source}: not an Ideogram 4 DiT: found neither 'layers.0.attention.qkv.weight' (release layout) "
        "nor 'layers.0.attention.to_q.weight' (diffusers layout)"
    )
