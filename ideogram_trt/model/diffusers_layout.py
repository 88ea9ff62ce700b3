"""Convert a release-layout checkpoint into the diffusers layout that ``Ideogram4Pipeline.from_pretrained``
loads correctly (the reference for every parity check).

diffusers 0.42.1 loads a release folder without complaint and computes garbage — q/k/v/out stay zero, the
scales are dropped, raw E4M3 codes are used unscaled (docs/ARCHITECTURE.md §9) — so the reference is always loaded from
this conversion: DiT attention split into ``to_q``/``to_k``/``to_v``/``to_out.0``, every FP8 weight dequantized
to bf16 exactly as the release's reference code does (docs/MODEL.md §8.2), the text encoder saved as a transformers
``Qwen3VLModel`` (its unused vision tower freshly initialized from a fixed seed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ideogram_trt.core.errors import IdeogramTrtError
from ideogram_trt.core.files import check_source_file, copy_tree, remove_stale, staged_dir
from ideogram_trt.model.checkpoint import (
    DIT_COMPONENTS,
    SCHEDULER,
    TEXT_ENCODER,
    TOKENIZER,
    VAE,
    Checkpoint,
    native_to_diffusers_dit,
    open_checkpoint,
)
from ideogram_trt.model.fp8 import dequantize_state

VISION_TOWER_SEED = 0


def convert_to_diffusers(source: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``out_dir`` (atomically) as a bf16 diffusers-layout copy of the checkpoint at ``source``."""
    checkpoint = open_checkpoint(source)
    target = Path(out_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise IdeogramTrtError(f"{target}: already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, names=lambda name: name == target.name)  # staging of a killed earlier run
    with staged_dir(target, replace=True) as stage:  # a kill or failure leaves the previous folder as it was
        _convert_into(checkpoint, stage)
    return target


def _convert_into(checkpoint: Checkpoint, root: Path) -> None:
    from transformers import Qwen3VLConfig, Qwen3VLModel

    index = json.loads((checkpoint.root / "model_index.json").read_text())
    for component in DIT_COMPONENTS:
        if component == "unconditional_transformer" and not checkpoint.has_unconditional:
            index.pop(component, None)
            continue
        folder = root / component
        folder.mkdir()
        source = check_source_file(checkpoint.folder(component) / "config.json", checkpoint.root)
        shutil.copyfile(source, folder / "config.json")
        state = native_to_diffusers_dit(dequantize_state(checkpoint.dit_state(component)))
        state = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items()}
        save_file(state, str(folder / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})

    raw = {k: v for k, v in checkpoint.text_encoder.raw.items() if k != "ideogram_fp8_weight_only"}
    config = Qwen3VLConfig(**raw)
    torch.manual_seed(VISION_TOWER_SEED)
    model = Qwen3VLModel(config).to(torch.bfloat16)
    language = dequantize_state(checkpoint.text_encoder_state())
    missing, unexpected = model.language_model.load_state_dict(language, strict=False)
    if unexpected or set(missing) - {"norm.weight"}:
        raise IdeogramTrtError(f"text encoder conversion: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(root / TEXT_ENCODER)

    for component in (TOKENIZER, VAE, SCHEDULER):
        copy_tree(checkpoint.folder(component), root / component, within=checkpoint.root)
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
