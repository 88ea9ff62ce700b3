"""Build the PyTorch modules from a checkpoint: weights dequantized as the reference does (spec §8.2), cast to
the compute dtype, in eval mode. Modules are created on the meta device and take the loaded tensors as they
are, so a full-size model costs its weights once, not twice."""

from __future__ import annotations

import torch
from torch import nn

from ideogram_trt.core.errors import CheckpointError
from ideogram_trt.model.checkpoint import TRANSFORMER, Checkpoint
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
    config = checkpoint.dit_config(component)
    state = dequantize_state(checkpoint.dit_state(component))
    for key in TEXT_PROJECTION_KEYS:  # the text projection runs in the text encoder (spec §4.9)
        state.pop(key, None)
    with torch.device("meta"):
        module = IdeogramDiT(config, conditional=component == TRANSFORMER)
    _assign(module, state, dtype, str(checkpoint.folder(component)))
    module.reset_buffers()
    return module.eval()


def load_text_encoder(checkpoint: Checkpoint, dtype: torch.dtype = torch.bfloat16) -> TextEncoder:
    """Qwen3-VL language model + the conditional DiT's ``llm_cond_norm``/``llm_cond_proj``."""
    state = {f"language_model.{k}": v for k, v in dequantize_state(checkpoint.text_encoder_state()).items()}
    # The final norm is loaded by the reference but never applied (spec §3.3); it may be absent.
    state.setdefault("language_model.norm.weight", torch.ones(checkpoint.text_encoder.hidden_size))
    projection = checkpoint.dit_state(TRANSFORMER, keys=[*TEXT_PROJECTION_KEYS, "llm_cond_proj.weight_scale"])
    state.update(dequantize_state(projection))
    with torch.device("meta"):
        module = TextEncoder(checkpoint.text_encoder, checkpoint.transformer)
    _assign(module, state, dtype, str(checkpoint.folder("text_encoder")))
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
