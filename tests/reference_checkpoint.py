"""An independent release-layout → diffusers-layout converter, the parity tests' reference checkpoint.

Written from the spec alone (no ``ideogram_trt`` import), so a dequantization bug in the package cannot hide in
the reference too: every FP8 ``X.weight`` [out, in] with its F32 ``X.weight_scale`` [out] becomes the bf16
``w.to(bf16) * scale.to(bf16)[:, None]`` (docs/MODEL.md §8.2, per row), the DiT's fused ``attention.qkv`` is split along
dim 0 into ``to_q``/``to_k``/``to_v`` and ``attention.o`` renamed ``to_out.0`` (the diffusers
``Ideogram4Transformer2DModel`` keys), and the text encoder is saved as a transformers ``Qwen3VLModel`` whose
unused vision tower is freshly initialized from seed 0. Configs, tokenizer, VAE and scheduler are copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

DIT_FILE = "diffusion_pytorch_model.safetensors"
TEXT_FILE = "model.safetensors"
TEXT_PREFIX = "language_model."


def read_dequantized(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one safetensors file, FP8 weights dequantized per row in bf16 (scales dropped)."""
    with safe_open(str(path), framework="pt") as handle:
        raw = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    out = {}
    for key, tensor in raw.items():
        if key.endswith(".weight_scale"):
            continue
        if tensor.dtype == torch.float8_e4m3fn:
            scale = raw[key + "_scale"]
            assert scale.shape == (tensor.shape[0],), f"{key}: scale {tuple(scale.shape)} is not per row"
            tensor = tensor.to(torch.bfloat16) * scale.to(torch.bfloat16)[:, None]
        out[key] = tensor
    return out


def dit_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        if key.endswith(".attention.qkv.weight"):
            stem = key[: -len("qkv.weight")]
            q, k, v = tensor.chunk(3, dim=0)
            out |= {f"{stem}to_q.weight": q, f"{stem}to_k.weight": k, f"{stem}to_v.weight": v}
        elif key.endswith(".attention.o.weight"):
            out[key[: -len("o.weight")] + "to_out.0.weight"] = tensor
        else:
            out[key] = tensor
    return {k: v.to(torch.bfloat16).contiguous() for k, v in out.items()}


def convert_reference(source: Path, target: Path) -> Path:
    """Write ``target`` as the bf16 diffusers-layout copy of the release-layout checkpoint at ``source``."""
    from transformers import Qwen3VLConfig, Qwen3VLModel

    source, target = Path(source), Path(target)
    target.mkdir(parents=True)
    index = json.loads((source / "model_index.json").read_text())
    for component in ("transformer", "unconditional_transformer"):
        if not (source / component).is_dir():
            index.pop(component, None)
            continue
        (target / component).mkdir()
        shutil.copyfile(source / component / "config.json", target / component / "config.json")
        state = dit_to_diffusers(read_dequantized(source / component / DIT_FILE))
        save_file(state, str(target / component / DIT_FILE), metadata={"format": "pt"})

    raw = json.loads((source / "text_encoder" / "config.json").read_text())
    raw.pop("ideogram_fp8_weight_only", None)
    torch.manual_seed(0)
    model = Qwen3VLModel(Qwen3VLConfig(**raw)).to(torch.bfloat16)
    language = {
        k[len(TEXT_PREFIX) :]: v
        for k, v in read_dequantized(source / "text_encoder" / TEXT_FILE).items()
        if k.startswith(TEXT_PREFIX)
    }
    missing, unexpected = model.language_model.load_state_dict(language, strict=False)
    assert not unexpected and set(missing) <= {"norm.weight"}, (missing, unexpected)
    model.save_pretrained(target / "text_encoder")

    for component in ("tokenizer", "vae", "scheduler"):
        shutil.copytree(source / component, target / component)
    (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return target
