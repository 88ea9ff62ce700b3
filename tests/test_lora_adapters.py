"""LoRA adapter files (core/lora.py): both layouts read and normalized to our module names, checked against
diffusers' own kohya converter and against weight updates the test computes itself; every bad file refused in one
line naming the file and the tensor."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.lora import ALL_TARGETS, LoraShape, LoraSlots, LoraTarget, check_fits, read_adapter, stack

SHAPE = LoraShape(layers=2, hidden=8, intermediate=12, adaln=6)


def widths(module: str) -> tuple[int, int]:
    """(in, out) of a block linear, from the spec (docs/MODEL.md §4.2), diffusers names included."""
    d, i, a = SHAPE.hidden, SHAPE.intermediate, SHAPE.adaln
    return {"attention.qkv": (d, 3 * d), "attention.o": (d, d), "attention.to_q": (d, d), "attention.to_k": (d, d),
            "attention.to_v": (d, d), "attention.to_out.0": (d, d), "feed_forward.w1": (d, i),
            "feed_forward.w2": (i, d), "feed_forward.w3": (d, i), "adaln_modulation": (a, 4 * d)}[module]  # fmt: skip


def factors(module: str, rank: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    fan_in, fan_out = widths(module)
    return torch.randn(rank, fan_in, generator=gen), torch.randn(fan_out, rank, generator=gen)


def diffusers_file(path: Path, modules: dict[int, list[str]], rank: int, seed: int = 0, **meta: object) -> dict:
    """A peft/diffusers-layout adapter; returns {(layer, module): (A, B)}."""
    gen = torch.Generator().manual_seed(seed)
    tensors, made = {}, {}
    for layer, names in modules.items():
        for module in names:
            a, b = factors(module, rank, gen)
            made[(layer, module)] = (a, b)
            tensors[f"transformer.layers.{layer}.{module}.lora_A.weight"] = a.to(torch.bfloat16)
            tensors[f"transformer.layers.{layer}.{module}.lora_B.weight"] = b.to(torch.bfloat16)
    metadata = {"lora_adapter_metadata": json.dumps(meta)} if meta else None
    save_file(tensors, str(path), metadata=metadata)
    return {k: (a.to(torch.bfloat16).double(), b.to(torch.bfloat16).double()) for k, (a, b) in made.items()}


def kohya_file(path: Path, modules: dict[int, list[str]], rank: int, alpha: float, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    tensors, made = {}, {}
    for layer, names in modules.items():
        for module in names:
            a, b = factors(module, rank, gen)
            made[(layer, module)] = (a.double(), b.double())
            stem = f"diffusion_model.layers.{layer}.{module}"
            tensors |= {
                f"{stem}.lora_down.weight": a,
                f"{stem}.lora_up.weight": b,
                f"{stem}.alpha": torch.tensor(alpha),
            }
    save_file(tensors, str(path))
    return made


def deltas(adapter) -> dict[tuple[int, str], np.ndarray]:
    return {(u.layer, u.target.value): u.delta() for u in adapter.updates}


def test_diffusers_layout_fuses_q_k_v_exactly(tmp_path: Path) -> None:
    path = tmp_path / "style.safetensors"
    made = diffusers_file(path, {0: ["attention.to_q", "attention.to_v", "feed_forward.w2"], 1: ["adaln_modulation"]},
                          rank=3, lora_alpha=6, r=3)  # fmt: skip
    adapter = read_adapter(path, SHAPE)
    assert adapter.name == "style" and adapter.layout == "diffusers"
    got = deltas(adapter)
    assert set(got) == {(0, "attention.qkv"), (0, "feed_forward.w2"), (1, "adaln_modulation")}
    d = SHAPE.hidden
    expected_qkv = np.zeros((3 * d, d))
    for row, module in ((0, "attention.to_q"), (2, "attention.to_v")):  # to_k absent: its rows stay zero
        a, b = made[(0, module)]
        expected_qkv[row * d : (row + 1) * d] = 2.0 * (b @ a).numpy()  # scale lora_alpha / r = 2
    np.testing.assert_allclose(got[(0, "attention.qkv")], expected_qkv, rtol=1e-6, atol=1e-6)
    a, b = made[(1, "adaln_modulation")]
    np.testing.assert_allclose(got[(1, "adaln_modulation")], 2.0 * (b @ a).numpy(), rtol=1e-6, atol=1e-6)
    assert adapter.rank == 6  # q and v: two rank-3 factors side by side


def test_kohya_layout_matches_diffusers_converter(tmp_path: Path) -> None:
    """The same kohya file read by us and by diffusers' converter (then fused by the test): equal updates."""
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_ideogram4_lora_to_diffusers
    from safetensors.torch import load_file

    path = tmp_path / "kohya.safetensors"
    modules = {0: ["attention.qkv", "attention.o", "feed_forward.w1"], 1: ["feed_forward.w3", "adaln_modulation"]}
    kohya_file(path, modules, rank=4, alpha=2.0)
    ours = deltas(read_adapter(path, SHAPE))
    converted = _convert_non_diffusers_ideogram4_lora_to_diffusers(load_file(str(path)))
    theirs: dict[tuple[int, str], np.ndarray] = {}
    for key in converted:
        if key.endswith(".lora_A.weight"):
            stem = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
            layer, module = int(stem.split(".")[1]), stem.split(".", 2)[2]
            delta = (converted[key.replace("lora_A", "lora_B")].double() @ converted[key].double()).numpy()
            theirs[(layer, module)] = delta
    for layer in (0, 1):
        parts = [theirs.pop((layer, f"attention.to_{p}"), None) for p in "qkv"]
        if parts[0] is not None:
            theirs[(layer, "attention.qkv")] = np.concatenate(parts)
    theirs = {(k[0], "attention.o" if k[1] == "attention.to_out.0" else k[1]): v for k, v in theirs.items()}
    assert set(ours) == set(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=1e-6, err_msg=str(key))


def test_shared_down_factor_is_not_counted_three_times(tmp_path: Path) -> None:
    """A fused kohya adapter converted to diffusers' layout has one A for q, k and v: rank r, not 3r."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2, SHAPE.hidden, generator=gen)
    tensors = {}
    for p in "qkv":
        tensors[f"transformer.layers.0.attention.to_{p}.lora_A.weight"] = a.clone()
        tensors[f"transformer.layers.0.attention.to_{p}.lora_B.weight"] = torch.randn(SHAPE.hidden, 2, generator=gen)
    save_file(tensors, str(tmp_path / "shared.safetensors"))
    adapter = read_adapter(tmp_path / "shared.safetensors", SHAPE)
    assert adapter.rank == 2
    b = torch.cat([tensors[f"transformer.layers.0.attention.to_{p}.lora_B.weight"] for p in "qkv"])
    np.testing.assert_allclose(adapter.updates[0].delta(), (b.double() @ a.double()).numpy(), rtol=1e-6, atol=1e-6)


def test_stack_concatenates_ranks_with_weights(tmp_path: Path) -> None:
    """B·A of the stacked engine inputs, per block and target, is the weighted sum of the adapters' updates."""
    kohya_file(tmp_path / "one.safetensors", {0: ["attention.qkv"], 1: ["feed_forward.w2"]}, rank=2, alpha=1.0)
    diffusers_file(tmp_path / "two.safetensors", {0: ["attention.to_k", "feed_forward.w2"]}, rank=3)
    one, two = read_adapter(tmp_path / "one.safetensors", SHAPE), read_adapter(tmp_path / "two.safetensors", SHAPE)
    slots = LoraSlots(8, SHAPE)
    feeds = stack([(one, 0.7), (two, -0.4)], slots)
    assert feeds[LoraTarget.QKV.down_input].shape == (2, SHAPE.hidden, one.rank + two.rank)  # Aᵀ, as the GEMM reads it
    for layer in (0, 1):
        for target in ALL_TARGETS:
            a_t, b_t = (feeds[n][layer].astype(np.float64) for n in (target.down_input, target.up_input))
            got = (a_t @ b_t).T  # B·A = (Aᵀ·Bᵀ)ᵀ
            expected = np.zeros_like(got)
            for adapter, weight in ((one, 0.7), (two, -0.4)):
                for u in adapter.updates:
                    if (u.layer, u.target) == (layer, target):
                        expected += weight * u.delta()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"{layer} {target}")
    empty = stack([], slots)
    assert all(a.shape[2 if n.endswith("_a") else 1] == 1 and not a.any() for n, a in empty.items())


def test_total_rank_above_the_engines_is_refused(tmp_path: Path) -> None:
    kohya_file(tmp_path / "big.safetensors", {0: ["attention.o"]}, rank=6, alpha=6.0)
    big = read_adapter(tmp_path / "big.safetensors", SHAPE)
    check_fits([big], LoraSlots(6, SHAPE), "SET")
    with pytest.raises(InputError, match=r"total rank 12 .*--lora-rank 6: rebuild with --lora-rank 12"):
        check_fits([big, big], LoraSlots(6, SHAPE), "SET")


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path))
    return path


def _good(module: str = "attention.o", rank: int = 2) -> dict[str, torch.Tensor]:
    fan_in, fan_out = widths(module)
    stem = f"transformer.layers.0.{module}"
    return {f"{stem}.lora_A.weight": torch.ones(rank, fan_in), f"{stem}.lora_B.weight": torch.ones(fan_out, rank)}


BAD = {
    "wrong-shape": (lambda: {**_good(), "transformer.layers.0.attention.o.lora_B.weight": torch.ones(5, 2)},
                    r"tensor 'transformer.layers.0.attention.o.lora_B.weight' has shape \[5, 2\], expected \[8, 2\]"),
    "unknown-module": (lambda: {"transformer.final_layer.linear.lora_A.weight": torch.ones(2, 8)},
                       r"tensor 'transformer.final_layer.linear.lora_A.weight' is not a LoRA factor"),
    "unknown-target": (lambda: {"transformer.layers.0.attention.norm_q.lora_A.weight": torch.ones(2, 8),
                                "transformer.layers.0.attention.norm_q.lora_B.weight": torch.ones(8, 2)},
                       r"targets 'attention.norm_q', which LoRA-ready engines do not carry"),
    "nan": (lambda: {**_good(), "transformer.layers.0.attention.o.lora_A.weight": torch.full((2, 8), float("nan"))},
            r"tensor 'transformer.layers.0.attention.o.lora_A.weight' holds NaN or Inf"),
    "other-model-size": (lambda: {"transformer.layers.0.attention.o.lora_A.weight": torch.ones(2, 16),
                                  "transformer.layers.0.attention.o.lora_B.weight": torch.ones(16, 2)},
                         r"has shape \[2, 16\]; attention.o of this model takes \[rank, 8\]: the adapter was trained "
                         r"for another model"),
    "other-depth": (lambda: {k.replace("layers.0", "layers.7"): v for k, v in _good().items()},
                    r"is for block 7, but this model has 2 blocks"),
    "half-pair": (lambda: {"transformer.layers.0.attention.o.lora_A.weight": torch.ones(2, 8)},
                  r"attention.o has .* but no up factor"),
    "int-dtype": (lambda: {**_good(),
                           "transformer.layers.0.attention.o.lora_B.weight": torch.ones(8, 2, dtype=torch.int32)},
                  r"is int32; LoRA factors must be float32, float16 or bfloat16"),
    "text-encoder": (lambda: {**_good(), "text_encoder.layers.0.q_proj.lora_A.weight": torch.ones(2, 8)},
                     r"adapts the text encoder; LoRA-ready engines carry adapters of the conditional DiT only"),
    "bad-alpha": (lambda: {k.replace("transformer.", "diffusion_model."): v for k, v in _good().items()}
                  | {"diffusion_model.layers.0.attention.o.alpha": torch.tensor(-1.0)},
                  r"alpha' must be one positive finite number"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_adapters_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    make, message = BAD[case]
    path = _write(tmp_path / f"{case}.safetensors", make())
    with pytest.raises(InputError, match=message) as raised:
        read_adapter(path, SHAPE)
    text = str(raised.value)
    assert "\n" not in text and str(path) in text


def test_pickles_are_never_opened(tmp_path: Path) -> None:
    """A .pt/.bin file is refused by name; a pickle renamed .safetensors by its bytes. Neither is unpickled: the
    payload would create a file."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    data = pickle.dumps(Payload(), protocol=4)
    for name, pattern in (("adapter.pt", r"a \.pt file is a pickle"), ("adapter.bin", r"a \.bin file is a pickle"),
                          ("renamed.safetensors", r"a pickle \(PyTorch\) file under another name")):  # fmt: skip
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=pattern):
            read_adapter(tmp_path / name, SHAPE)
    torch.save(_good(), tmp_path / "zip.safetensors")  # PyTorch's zip format
    with pytest.raises(InputError, match="under another name"):
        read_adapter(tmp_path / "zip.safetensors", SHAPE)
    assert not marker.exists()


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.safetensors", _good())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match=r"byte range .* does not fit its shape"):
        read_adapter(path, SHAPE)
