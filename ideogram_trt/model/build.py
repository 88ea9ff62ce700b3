"""Build the PyTorch modules from a checkpoint: weights dequantized as the reference does (docs/MODEL.md §8.2), cast to
the compute dtype, in eval mode. Modules are created on the meta device and take the loaded tensors as they
are, so a full-size model costs its weights once, not twice."""

from __future__ import annotations

import torch
from torch import nn

from ideogram_trt.core.errors import CheckpointError
from ideogram_trt.model.checkpoint import TEXT_ENCODER, TRANSFORMER, Checkpoint
from ideogram_trt.model.dit import IdeogramDiT
from ideogram_trt.model.fp8 import dequantize_state
from ideogram_trt.model.text_encoder import TextEncoder
from ideogram_trt.model.vae_decoder import VaeDecoder

TEXT_PROJECTION_KEYS = ("llm_cond_norm.weight", "llm_cond_proj.weight", "llm_cond_proj.bias")


def _assign(module: nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, source: str) -> None:
    keep_fp32 = {k for k, v in module.state_dict().items() if v.dtype == torch.float32 and k.startswith("latent_")}
    cast = {k: (v.to(torch.float32) if k in keep_fp32 else v.to(dtype)) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(cast, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not fit the module (missing {missing}, unexpected {unexpected})")


def load_dit(checkpoint: Checkpoint, component: str = TRANSFORMER, dtype: torch.dtype = torch.bfloat16) -> IdeogramDiT:
    return dit_from_state(checkpoint, component, checkpoint.dit_state(component), dtype)


def dit_from_state(
    checkpoint: Checkpoint, component: str, state: dict[str, torch.Tensor], dtype: torch.dtype
) -> IdeogramDiT:
    """The DiT from its stored tensors (FP8 or floating, native keys), dequantized and cast to ``dtype``."""
    weights = dequantize_state(state)
    for key in TEXT_PROJECTION_KEYS:  # the text projection runs in the text encoder (docs/MODEL.md §4.9)
        weights.pop(key, None)
    with torch.device("meta"):
        module = IdeogramDiT(checkpoint.dit_config(component), conditional=component == TRANSFORMER)
    _assign(module, weights, dtype, str(checkpoint.folder(component)))
    module.reset_buffers()
    return module.eval()


def text_encoder_state(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The text encoder's stored tensors under the module's names (FP8 kept): the language model and the
    conditional DiT's text projection."""
    state = {f"language_model.{k}": v for k, v in checkpoint.text_encoder_state().items()}
    # The final norm is loaded by the reference but never applied (docs/MODEL.md §3.3); it may be absent.
    state.setdefault("language_model.norm.weight", torch.ones(checkpoint.text_encoder.hidden_size))
    state.update(checkpoint.dit_state(TRANSFORMER, keys=[*TEXT_PROJECTION_KEYS, "llm_cond_proj.weight_scale"]))
    return state


def load_text_encoder(checkpoint: Checkpoint, dtype: torch.dtype = torch.bfloat16) -> TextEncoder:
    """Qwen3-VL language model + the conditional DiT's ``llm_cond_norm``/``llm_cond_proj``."""
    return text_encoder_from_state(checkpoint, text_encoder_state(checkpoint), dtype)


def text_encoder_from_state(checkpoint: Checkpoint, state: dict[str, torch.Tensor], dtype: torch.dtype) -> TextEncoder:
    state = dequantize_state(state)
    with torch.device("meta"):
        module = TextEncoder(checkpoint.text_encoder, checkpoint.transformer)
    _assign(module, state, dtype, str(checkpoint.folder(TEXT_ENCODER)))
    module.reset_buffers()
    return module.eval()


def load_vae_decoder(checkpoint: Checkpoint, dtype: torch.dtype = torch.bfloat16) -> VaeDecoder:
    state = checkpoint.vae_state()
    state["latent_mean"] = state.pop("bn.running_mean")
    state["latent_var"] = state.pop("bn.running_var")
    with torch.device("meta"):
        module = VaeDecoder(checkpoint.vae)
    _assign(module, state, dtype, str(checkpoint.folder("vae")))
    return module.eval()
