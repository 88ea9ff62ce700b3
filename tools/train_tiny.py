"""Train the tiny shapes checkpoint (docs/TINY_MODEL.md): Ideogram 4's architecture at tiny widths, taught to draw
the captions of ``ideogram_trt.quality.shapes``. Never run in CI; one GPU of the lent machine, a few minutes a stage.

    python tools/train_tiny.py base   --work W               # the random tiny checkpoint: text encoder, configs
    python tools/train_tiny.py vae    --work W               # AutoencoderKLFlux2 as an autoencoder, then its bn stats
    python tools/train_tiny.py dit    --work W               # both DiTs by flow matching on the VAE's latents
    python tools/train_tiny.py dit    --work W2 --init-from W  # a second DiT run from W's weights (fresh schedule)
    python tools/train_tiny.py export --work W [--then W2] [--repeat R --repeat R2] --out DIR
                                        # the release FP8 layout + training.json + SHA256SUMS (+ reproduction/)

Every stage is seeded by ``--seed``: the model starts from a seeded init and step k draws its batch from a
generator seeded by (seed, stage, k), so a stage stopped by ``--max-minutes`` resumes exactly where it stopped (its
state is saved every ``--save-every`` steps) and a retrain follows the same data. On a GPU some kernels add in a
varying order, so a retrain's losses drift a few percent (docs/TINY_MODEL.md §4.2). Each stage appends its command
to ``W/commands.jsonl`` and its losses to ``W/<stage>_log.jsonl``; ``export`` builds the record from them.
The text encoder is ``make-tiny``'s random one, frozen; its features for every caption are computed once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from ideogram_trt.core.digest import sha256_bytes
from ideogram_trt.core.files import staged_dir
from ideogram_trt.model.checkpoint import TRANSFORMER, diffusers_to_native_dit, open_checkpoint
from ideogram_trt.model.checkpoint import UNCONDITIONAL_TRANSFORMER as UNCONDITIONAL
from ideogram_trt.model.fp8 import quantize_rowwise
from ideogram_trt.model.layout import Layout, dit_expected
from ideogram_trt.model.tiny import TinySpec, dit_config, vae_config_json, write_tiny_checkpoint
from ideogram_trt.quality import shapes

# The trained model's widths (docs/TINY_MODEL.md §2): wide enough to compose five attributes, small enough that
# `make demo` and the quality gates run on two CPU cores.
SPEC = TinySpec(
    seed=0,
    layers=4,
    heads=4,
    head_dim=32,
    intermediate_size=512,
    adaln_dim=64,
    latent_channels=4,
    vae_channels=(16, 32, 64, 64),
    vae_groups=8,
)
RESOLUTION_MEAN_SHIFT = 0.5 * math.log(shapes.IMAGE_SIZE**2 / 512**2)  # docs/MODEL.md §5.1 at 256x256
PRESET_MUS = (0.0, 0.5)  # V4_DEFAULT_20 / V4_QUALITY-like and V4_TURBO_12 (docs/MODEL.md §5.4)
TIME_STD = 1.75
T_MIN, T_MAX = 1.2339458e-4, 0.99944722  # docs/MODEL.md §5.1


@dataclass(frozen=True)
class Settings:
    seed: int
    vae_steps: int
    vae_batch: int
    vae_lr: float
    kl_weight: float
    dit_steps: int
    dit_batch: int
    dit_lr: float
    ema: float
    uniform_time: float  # share of timesteps drawn uniformly instead of from the LogitNormal
    bank: int  # jittered training images encoded once; DiT steps draw their latents from them


@dataclass(frozen=True)
class Run:
    """How a training stage runs, as opposed to what it learns (``Settings``): when it saves and pauses, how often
    it logs, and an optional early stop (a reproduction check of the first steps that writes nothing final)."""

    deadline: float  # time.time() past which the stage saves its state and pauses
    save_every: int
    log_every: int
    stop_after: int | None

    def end(self, steps: int) -> int:
        return min(steps, self.stop_after or steps)

    def saves_at(self, done: int, steps: int) -> bool:
        return done % self.save_every == 0 or done == steps or time.time() > self.deadline

    def pauses_at(self, done: int, steps: int) -> bool:
        return time.time() > self.deadline and done < steps

    def stopped_early(self, stage: str, steps: int) -> bool:
        if self.stop_after is None or self.stop_after >= steps:
            return False
        print(f"{stage}: stopped after step {self.stop_after} as asked (a reproduction check of the first steps)")
        return True


def step_generator(seed: int, stage: str, step: int, device: torch.device) -> torch.Generator:
    """The generator of one step's batch: fixed by (seed, stage, step), so a resumed or repeated run sees the
    same data."""
    key = hashlib.sha256(f"{seed}/{stage}/{step}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(key[:8], "little") >> 1)


def lr_at(step: int, steps: int, peak: float, warmup: int = 300) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def patchify(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, 2GH, 2GW] → [B, GH·GW, 4C], channels (patch_row, patch_col, c): the inverse of docs/MODEL.md §6."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // 2) * (w // 2), 4 * c)


class Log:
    """Window means of the loss terms every ``every`` steps, printed and appended to a JSONL file."""

    def __init__(self, path: Path, every: int = 100) -> None:
        self.path, self.every, self.sums, self.count, self.start = path, every, {}, 0, time.perf_counter()

    def add(self, step: int, lr: float, **terms: torch.Tensor) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach()
        self.count += 1
        if (step + 1) % self.every == 0:
            means = {k: float(v) / self.count for k, v in self.sums.items()}
            seconds = time.perf_counter() - self.start
            row = {"step": step + 1, "lr": lr, **means, "ms_per_step": 1000 * seconds / self.count}
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            self.sums, self.count, self.start = {}, 0, time.perf_counter()


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path, device: torch.device) -> dict[str, Any] | None:
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else None


@cache
def training_indices() -> tuple[int, ...]:
    """Rows of ``all_captions()`` that training may draw (computed once: the split hashes every caption)."""
    return tuple(i for i, c in enumerate(shapes.all_captions()) if not c.held_out)


def sample_captions(gen: torch.Generator, batch: int) -> tuple[list[shapes.Caption], torch.Tensor]:
    train = training_indices()
    picks = torch.randint(len(train), (batch,), generator=gen, device=gen.device).cpu()
    index = torch.tensor([train[i] for i in picks.tolist()])
    captions = shapes.all_captions()
    return [captions[i] for i in index.tolist()], index


# --- stage: base ---------------------------------------------------------------------------------------------------


def text_encoder_digest(base: Path) -> str:
    return sha256_bytes((base / "text_encoder" / "model.safetensors").read_bytes())


def base_spec(seed: int) -> TinySpec:
    return TinySpec(**{**asdict(SPEC), "seed": seed})


def stage_base(work: Path, settings: Settings) -> str:
    """Write the base checkpoint; returns its text encoder's sha256 (recorded, so export can check a rewrite)."""
    write_tiny_checkpoint(work / "base", base_spec(settings.seed), overwrite=True)
    digest = text_encoder_digest(work / "base")
    print(f"base checkpoint written; text encoder sha256 {digest}")
    return digest


# --- stage: vae ----------------------------------------------------------------------------------------------------


def new_vae(device: torch.device) -> torch.nn.Module:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2.from_config(vae_config_json(SPEC)).to(device)


def stage_vae(work: Path, settings: Settings, device: torch.device, run: Run, stat_images: int) -> bool:
    torch.manual_seed(settings.seed)
    vae = new_vae(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    state_path, start = work / "vae_state.pt", 0
    if (state := load_state(state_path, device)) is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        print(f"vae: resuming at step {start}")
    log = Log(work / "vae_log.jsonl", run.log_every)
    for step in range(start, run.end(settings.vae_steps)):
        gen = step_generator(settings.seed, "vae", step, device)
        captions, _ = sample_captions(gen, settings.vae_batch)
        x = shapes.render(captions, gen) * 2 - 1
        lr = lr_at(step, settings.vae_steps, settings.vae_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(
                posterior.mean.shape, generator=gen, device=device, dtype=posterior.mean.dtype
            )
            recon = vae.decode(z).sample
        recon = recon.float()
        l1 = (recon - x).abs().mean()
        l2 = ((recon - x) ** 2).mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = l1 + l2 + settings.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        log.add(step, lr, loss=loss, l1=l1, l2=l2, kl=kl)
        done = step + 1
        if run.saves_at(done, settings.vae_steps):
            save_state(state_path, {"model": vae.state_dict(), "opt": opt.state_dict(), "step": done})
            if run.pauses_at(done, settings.vae_steps):
                print(f"vae: time budget reached at step {done}; run again to resume")
                return False
    if run.stopped_early("vae", settings.vae_steps):
        return True
    set_latent_stats(vae, settings, device, stat_images)
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}, str(work / "vae.safetensors"))
    return True


@torch.no_grad()
def set_latent_stats(vae: torch.nn.Module, settings: Settings, device: torch.device, images: int = 4096) -> None:
    """The ``bn`` running statistics the pipeline de-normalizes with (docs/MODEL.md §6): per packed channel, over
    the latent means of training images."""
    vae.eval()
    tokens = []
    chunk_size = min(256, images)
    for chunk in range(images // chunk_size):
        gen = step_generator(settings.seed, "bn", chunk, device)
        captions, _ = sample_captions(gen, chunk_size)
        x = shapes.render(captions, gen) * 2 - 1
        tokens.append(patchify(vae.encode(x).latent_dist.mean.float()).flatten(0, 1))
    packed = torch.cat(tokens)
    vae.bn.running_mean.copy_(packed.mean(0))
    vae.bn.running_var.copy_(packed.var(0))
    vae.bn.num_batches_tracked.fill_(len(tokens))
    std = packed.std(0)
    print(f"latent stats: mean {packed.mean(0).abs().max():.3f} (max |.|), std {std.min():.3f}..{std.max():.3f}")


def load_vae(work: Path, device: torch.device) -> torch.nn.Module:
    from safetensors.torch import load_file

    vae = new_vae(device)
    vae.load_state_dict(load_file(str(work / "vae.safetensors"), device=str(device)))
    return vae.eval().requires_grad_(False)


def encode_latents(vae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Normalized packed latents [B, N, 4C], what the DiT denoises (the inverse of the pipeline's de-normalization)."""
    packed = patchify(vae.encode(x).latent_dist.mean.float())
    eps = vae.config.batch_norm_eps
    return (packed - vae.bn.running_mean) / torch.sqrt(vae.bn.running_var + eps)


# --- stage: dit ----------------------------------------------------------------------------------------------------


@dataclass
class TextTable:
    """Text features of every caption, left-padded to one width T, and the packed-sequence ids of the
    conditional call (docs/MODEL.md §4.4)."""

    features: torch.Tensor  # [C, T, F] fp32, zero on pads
    position_ids: torch.Tensor  # [C, T + N, 3]
    segment_ids: torch.Tensor  # [C, T + N]
    indicator: torch.Tensor  # [C, T + N]

    @property
    def width(self) -> int:
        return int(self.features.shape[1])


@torch.no_grad()
def text_table(work: Path, device: torch.device, grid: int) -> TextTable:
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import Ideogram4Pipeline

    from ideogram_trt.core.tokenization import PromptTokenizer
    from ideogram_trt.model.build import load_text_encoder

    checkpoint = open_checkpoint(work / "base")
    encoder = load_text_encoder(checkpoint, dtype=torch.float32).to(device)
    tokenizer = PromptTokenizer.from_dir(work / "base" / "tokenizer")
    batch = tokenizer.batch([c.prompt for c in shapes.all_captions()])
    ids = torch.from_numpy(batch.input_ids).to(device)
    mask = torch.from_numpy(batch.attention_mask).to(device)
    features = torch.cat([encoder.features(i, m) for i, m in zip(ids.split(256), mask.split(256), strict=True)])
    position_ids, segment_ids, indicator = Ideogram4Pipeline._prepare_ids(
        list(batch.lengths), grid, grid, batch.text_tokens, device
    )
    print(f"text features: {tuple(features.shape)}, lengths {min(batch.lengths)}..{max(batch.lengths)}")
    return TextTable(features, position_ids, segment_ids, indicator)


@torch.no_grad()
def latent_bank(vae: torch.nn.Module, settings: Settings, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``settings.bank`` jittered training images, encoded once: [bank, N, 4C] latents and their caption rows."""
    latents, rows = [], []
    chunk = min(256, settings.bank)
    for part in range(settings.bank // chunk):
        gen = step_generator(settings.seed, "bank", part, device)
        captions, index = sample_captions(gen, chunk)
        latents.append(encode_latents(vae, shapes.render(captions, gen) * 2 - 1))
        rows.append(index.to(device))
    print(f"latent bank: {settings.bank} images encoded", flush=True)
    return torch.cat(latents), torch.cat(rows)


def new_dit(device: torch.device) -> torch.nn.Module:
    from diffusers import Ideogram4Transformer2DModel

    return Ideogram4Transformer2DModel.from_config(dit_config(SPEC).to_dict()).to(device)


def sample_time(gen: torch.Generator, batch: int, settings: Settings, device: torch.device) -> torch.Tensor:
    """Model time t (0 noise, 1 data) drawn as the presets' LogitNormal places steps (docs/MODEL.md §5.1), with a
    uniform share so no t is starved."""
    mu = torch.tensor(PRESET_MUS, device=device)[torch.randint(len(PRESET_MUS), (batch,), generator=gen, device=device)]
    normal = torch.randn(batch, generator=gen, device=device)
    t = 1 - torch.sigmoid(mu + RESOLUTION_MEAN_SHIFT + TIME_STD * normal)
    uniform = torch.rand(batch, generator=gen, device=device)
    pick = torch.rand(batch, generator=gen, device=device) < settings.uniform_time
    return torch.where(pick, uniform, t).clamp(T_MIN, T_MAX)


def stage_dit(
    work: Path,
    settings: Settings,
    device: torch.device,
    run: Run,
    init_from: Path | None = None,
    compile_models: bool = False,
) -> bool:
    grid = shapes.IMAGE_SIZE // 16
    vae = load_vae(work, device)
    table = text_table(work, device, grid)
    tokens = grid * grid
    torch.manual_seed(settings.seed)
    models = {TRANSFORMER: new_dit(device).train(), UNCONDITIONAL: new_dit(device).train()}
    if init_from is not None:  # a second stage: continue from an earlier run's (EMA) weights with a new schedule
        from safetensors.torch import load_file

        for name, model in models.items():
            model.load_state_dict(load_file(str(init_from / f"{name}.safetensors"), device=str(device)))
        print(f"dit: starting from the weights in {init_from}")
    emas = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    opts = {
        name: torch.optim.AdamW(m.parameters(), lr=settings.dit_lr, betas=(0.9, 0.99), weight_decay=0.0)
        for name, m in models.items()
    }
    state_path, start = work / "dit_state.pt", 0
    if (state := load_state(state_path, device)) is not None:
        for name in models:
            models[name].load_state_dict(state["model"][name])
            opts[name].load_state_dict(state["opt"][name])
            emas[name] = state["ema"][name]
        start = state["step"]
        print(f"dit: resuming at step {start}")
    # The step is bound by Python dispatch, not the GPU, at these widths (docs/TINY_MODEL.md §4): compiling fuses the
    # small kernels. The compiled callables share the modules' parameters; states are saved from the modules.
    forward = {n: torch.compile(m) if compile_models else m for n, m in models.items()}
    unconditional_ids = table.position_ids[0, table.width :][None]  # image rows only (docs/MODEL.md §4.4)
    bank_latents, bank_index = latent_bank(vae, settings, device)
    log = Log(work / "dit_log.jsonl", run.log_every)
    for step in range(start, run.end(settings.dit_steps)):
        gen = step_generator(settings.seed, "dit", step, device)
        picks = torch.randint(settings.bank, (settings.dit_batch,), generator=gen, device=device)
        x0, index = bank_latents[picks], bank_index[picks]  # [B, N, 4C], caption rows
        b = settings.dit_batch
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = sample_time(gen, b, settings, device)
        xt = t[:, None, None] * x0 + (1 - t[:, None, None]) * noise
        target = x0 - noise  # docs/MODEL.md §5.2: v = x0 − noise
        channels = x0.shape[-1]
        cond_hidden = torch.cat([xt.new_zeros(b, table.width, channels), xt], dim=1)
        cond_text = torch.cat([table.features[index], xt.new_zeros(b, tokens, table.features.shape[-1])], dim=1)
        lr = lr_at(step, settings.dit_steps, settings.dit_lr)
        terms = {}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            v_cond = forward[TRANSFORMER](
                cond_hidden, t, cond_text, table.position_ids[index], table.segment_ids[index], table.indicator[index]
            ).sample[:, table.width :]
            v_uncond = forward[UNCONDITIONAL](
                xt,
                t,
                xt.new_zeros(b, tokens, table.features.shape[-1]),
                unconditional_ids.expand(b, -1, -1),
                torch.ones(b, tokens, dtype=torch.long, device=device),
                torch.full((b, tokens), 2, dtype=torch.long, device=device),
            ).sample
        for name, v in ((TRANSFORMER, v_cond), (UNCONDITIONAL, v_uncond)):
            loss = ((v.float() - target) ** 2).mean()
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models[name].parameters(), 1.0)
            for group in opts[name].param_groups:
                group["lr"] = lr
            opts[name].step()
            with torch.no_grad():
                torch._foreach_lerp_(emas[name], [p.detach() for p in models[name].parameters()], 1 - settings.ema)
            terms["cond" if name == TRANSFORMER else "uncond"] = loss
        log.add(step, lr, **terms)
        done = step + 1
        if run.saves_at(done, settings.dit_steps):
            save_state(
                state_path,
                {
                    "model": {n: m.state_dict() for n, m in models.items()},
                    "opt": {n: o.state_dict() for n, o in opts.items()},
                    "ema": emas,
                    "step": done,
                },
            )
            if run.pauses_at(done, settings.dit_steps):
                print(f"dit: time budget reached at step {done}; run again to resume (weights so far written)")
                save_dit_weights(work, models, emas)
                return False
    if run.stopped_early("dit", settings.dit_steps):
        return True
    save_dit_weights(work, models, emas)
    return True


def save_dit_weights(work: Path, models: dict[str, torch.nn.Module], emas: dict[str, list[torch.Tensor]]) -> None:
    from safetensors.torch import save_file

    for name, model in models.items():
        names = [n for n, _ in model.named_parameters()]
        weights = {n: e.detach().float().cpu().contiguous() for n, e in zip(names, emas[name], strict=True)}
        save_file(weights, str(work / f"{name}.safetensors"))


# --- the training record ------------------------------------------------------------------------------------------


def recipe_command(argv: list[str]) -> str:
    """The command line of a stage as a recipe: work folders written W, W2, … (and the repeat run's R, R2, …),
    ``--max-minutes`` dropped (a paused and resumed stage trains exactly as an uninterrupted one)."""
    words, rest, counts = ["python", "tools/train_tiny.py"], iter(argv), {"--then": 1, "--repeat": 0}
    for word in rest:
        name, has_value = word.split("=", 1)[0], "=" in word
        if name not in ("--max-minutes", "--work", "--then", "--repeat"):
            words.append(word)
            continue
        if not has_value:
            next(rest, None)
        if name == "--work":
            words += ["--work", "W"]
        elif name in counts:
            counts[name] += 1
            letter = "W" if name == "--then" else "R"
            words += [name, letter + (str(counts[name]) if counts[name] > 1 else "")]
    return " ".join(words)


def record_invocation(
    work: Path, stage: str, argv: list[str], finished: bool, seconds: float, device: torch.device, **extra: str
) -> None:
    """Append one stage run to ``W/commands.jsonl``; ``export`` turns these into training.json's ``stages``."""
    row = {
        "stage": stage,
        "command": recipe_command(argv),
        "finished": finished,
        "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "torch": torch.__version__,
        **extra,
    }
    with (work / "commands.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


def gather_stages(work: Path) -> list[dict[str, Any]]:
    """One entry per stage from ``W/commands.jsonl``: its recipe command and settings, the steps its log reached,
    its wall time summed over pauses. Refuses a stage that ran with two different commands or did not finish."""
    path = work / "commands.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the stages with this version of train_tiny.py, then export")
    stages: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        entry = stages.setdefault(row["stage"], {"stage": row["stage"], "command": row["command"], "runs": 0})
        if entry["command"] != row["command"]:
            raise SystemExit(f"{path}: stage {row['stage']} ran as {entry['command']!r} and {row['command']!r}")
        entry["runs"] += 1
        entry["wall_seconds"] = round(entry.get("wall_seconds", 0.0) + row["seconds"], 1)
        entry["finished"], entry["device"], entry["torch"] = row["finished"], row["device"], row["torch"]
        if "text_encoder_sha256" in row:
            entry["text_encoder_sha256"] = row["text_encoder_sha256"]
    for name, entry in stages.items():
        if not entry["finished"]:
            raise SystemExit(f"{path}: stage {name} did not finish; run it again to resume, then export")
        if (settings := work / f"{name}_settings.json").exists() and name != "base":
            entry["settings"] = json.loads(settings.read_text())
        if (log := work / f"{name}_log.jsonl").exists():
            entry["steps"] = last_row(log)["step"]
            entry["log"] = str(log)
    return list(stages.values())


def chain_stages(chain: list[Path]) -> list[dict[str, Any]]:
    """The stages of one training run kept in ``chain``: its work folders in order, each later one continuing the
    DiT of the one before (``dit --init-from``). Folders are written W, W2, …; the DiT runs ``dit (1)``, ``dit (2)``."""
    entries = []
    for k, work in enumerate(chain):
        for entry in gather_stages(work):
            if len(chain) > 1 and entry["stage"] == "dit":
                entry["stage"] = f"dit ({k + 1})"
            if k > 0:
                source = re.search(r"--init-from[ =](\S+)", entry["command"])
                if source is None or Path(source[1]).name != chain[k - 1].name:
                    raise SystemExit(
                        f"{work}: its DiT run does not continue {chain[k - 1]} (--init-from "
                        f"{source[1] if source else 'missing'}); pass the folders of one run in order"
                    )
                entry["command"] = re.sub(r"--work W\b", f"--work W{k + 1}", entry["command"])
                entry["command"] = re.sub(
                    r"--init-from[ =]\S+", "--init-from " + ("W" if k == 1 else f"W{k}"), entry["command"]
                )
            entries.append(entry)
    return entries


def log_name(stage: str) -> str:
    """``vae`` → vae_log.jsonl, ``dit (2)`` → dit_stage2_log.jsonl."""
    match = re.fullmatch(r"dit \((\d+)\)", stage)
    return f"dit_stage{match[1]}_log.jsonl" if match else f"{stage}_log.jsonl"


def last_row(log: Path) -> dict[str, Any]:
    return dict(json.loads(log.read_text().splitlines()[-1]))


# --- stage: export -------------------------------------------------------------------------------------------------


def release_dit(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EMA weights (diffusers keys, fp32) → the release layout: E4M3 + F32 row scale for linears, bf16 otherwise
    (docs/MODEL.md §8.1)."""
    native = diffusers_to_native_dit(weights)
    expected = dit_expected(dit_config(SPEC), Layout.RELEASE, conditional=True)
    if set(native) != set(expected):
        raise SystemExit(f"trained DiT keys differ from the layout: {sorted(set(native) ^ set(expected))}")
    out: dict[str, torch.Tensor] = {}
    for key in sorted(expected):
        if expected[key].linear:
            out[key], out[key + "_scale"] = quantize_rowwise(native[key])
        else:
            out[key] = native[key].to(torch.bfloat16)
    return out


def check_repeat(stages: list[dict[str, Any]], repeats: list[dict[str, Any]]) -> None:
    """A repeat run is a reproduction only if every stage ran with the same command and settings."""
    for name, key in (("stages", "stage"), ("commands", "command"), ("settings", "settings")):
        if [e.get(key) for e in repeats] != [e.get(key) for e in stages]:
            raise SystemExit(f"--repeat: that run's stage {name} differ from the exported run's; it is no reproduction")


def stage_export(chain: list[Path], out: Path, repeat: list[Path], record: dict[str, Any]) -> None:
    """Write the release folder from the last work folder's weights, with the whole run's record; ``repeat`` is the
    same run trained again (the reproduction check, docs/TINY_MODEL.md §4.2), whose logs go to reproduction/."""
    from safetensors.torch import load_file, save_file

    stages = chain_stages(chain)
    repeats = {e["stage"]: e for e in chain_stages(repeat)} if repeat else {}
    if repeat:
        check_repeat(stages, list(repeats.values()))
    last = chain[-1]
    with staged_dir(out, replace=True) as stage:
        base = chain[0] / "base"
        with tempfile.TemporaryDirectory() as scratch:
            if not base.is_dir():  # stage base is a pure function of the seed: write it again
                seed = json.loads((chain[0] / "base_settings.json").read_text())["seed"]
                base = Path(scratch) / "base"
                write_tiny_checkpoint(base, base_spec(seed))
                trained_with = stages[0].get("text_encoder_sha256")
                if trained_with is not None and trained_with != text_encoder_digest(base):
                    raise SystemExit(f"{chain[0]}: the base written again differs from the one trained with")
            shutil.copytree(base, stage, dirs_exist_ok=True)
        shutil.copyfile(last / "vae.safetensors", stage / "vae" / "diffusion_pytorch_model.safetensors")
        for name in (TRANSFORMER, UNCONDITIONAL):
            state = release_dit(load_file(str(last / f"{name}.safetensors")))
            save_file(state, str(stage / name / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        prompts = [c.prompt for c in shapes.training_captions()[:: len(shapes.training_captions()) // 16][:16]]
        (stage / "calibration_prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
        final_loss, reproduction = {}, {}
        for entry in stages:
            if "log" not in entry:
                continue
            log, entry["log"] = Path(entry["log"]), log_name(entry["stage"])
            shutil.copyfile(log, stage / entry["log"])
            final_loss[entry["stage"]] = shipped = last_row(log)
            if entry["stage"] in repeats:
                again = Path(repeats[entry["stage"]]["log"])
                (stage / "reproduction").mkdir(exist_ok=True)
                shutil.copyfile(again, stage / "reproduction" / entry["log"])
                repeated = last_row(again)
                terms = [k for k in shipped if k not in ("step", "lr", "ms_per_step")]
                reproduction[entry["stage"]] = {
                    "step": repeated["step"],
                    "relative_difference": {k: abs(repeated[k] - shipped[k]) / abs(shipped[k]) for k in terms},
                }
        export_command = record.pop("command")
        record = {
            **record,
            "spec": asdict(SPEC),
            "data": {
                "grammar": "ideogram_trt.quality.shapes",
                "captions": len(shapes.all_captions()),
                "training_captions": len(shapes.training_captions()),
                "held_out_captions": len(shapes.held_out_captions()),
                "image_size": shapes.IMAGE_SIZE,
            },
            "final_loss": final_loss,
            "reproduction": reproduction,
            "stages": [*stages, {"stage": "export", "command": export_command}],
        }
        (stage / "training.json").write_text(json.dumps(record, indent=2) + "\n")
        sums = []
        for path in sorted(p for p in stage.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
            sums.append(f"{sha256_bytes(path.read_bytes())}  {path.relative_to(stage)}\n")
        (stage / "SHA256SUMS").write_text("".join(sums))
    open_checkpoint(out)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("base", "vae", "dit", "export"))
    parser.add_argument("--work", type=Path, required=True, help="folder for states, logs and the base checkpoint")
    parser.add_argument("--out", type=Path, help="export: the checkpoint folder to write")
    parser.add_argument(
        "--then",
        type=Path,
        action="append",
        default=[],
        help="export: a later work folder of the same run (its DiT stage continued with --init-from); repeatable",
    )
    parser.add_argument(
        "--repeat",
        type=Path,
        action="append",
        default=[],
        help="export: the work folders of the same run trained again, in order (the reproduction check)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=2500)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--dit-steps", type=int, default=20000)
    parser.add_argument("--dit-batch", type=int, default=1024)
    parser.add_argument("--dit-lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--uniform-time", type=float, default=0.1)
    parser.add_argument("--bank", type=int, default=32768, help="jittered images encoded once for the DiT stage")
    parser.add_argument(
        "--init-from", type=Path, help="dit: start from the DiT weights in this folder (a second stage)"
    )
    parser.add_argument(
        "--stop-after", type=int, help="stop after this step, writing nothing final (a reproduction check)"
    )
    parser.add_argument("--max-minutes", type=float, default=14.0, help="save and stop after this long (resume later)")
    parser.add_argument("--save-every", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--stat-images", type=int, default=4096, help="images the latent statistics are taken over")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="dit: torch.compile both DiTs (default: on a GPU)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        seed=args.seed,
        vae_steps=args.vae_steps,
        vae_batch=args.vae_batch,
        vae_lr=args.vae_lr,
        kl_weight=args.kl_weight,
        dit_steps=args.dit_steps,
        dit_batch=args.dit_batch,
        dit_lr=args.dit_lr,
        ema=args.ema,
        uniform_time=args.uniform_time,
        bank=args.bank,
    )
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    settings_path = work / f"{args.stage}_settings.json"
    if args.stage != "export":
        if settings_path.exists() and json.loads(settings_path.read_text()) != asdict(settings):
            raise SystemExit(f"{settings_path}: this work folder was started with other settings")
        settings_path.write_text(json.dumps(asdict(settings), indent=2) + "\n")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = True  # among deterministic algorithms only (next line)
    torch.backends.cudnn.deterministic = True
    device = torch.device(args.device)
    run = Run(time.time() + 60 * args.max_minutes, args.save_every, args.log_every, args.stop_after)
    words = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    extra = {}
    if args.stage == "base":
        extra["text_encoder_sha256"] = stage_base(work, settings)
        finished = True
    elif args.stage == "vae":
        finished = stage_vae(work, settings, device, run, args.stat_images)
    elif args.stage == "dit":
        compile_models = device.type == "cuda" if args.compile is None else args.compile
        finished = stage_dit(work, settings, device, run, args.init_from, compile_models)
    else:
        if args.out is None:
            parser.error("export needs --out")
        record = {"command": recipe_command(words)}
        stage_export([work, *args.then], args.out, args.repeat, record)
        return 0
    seconds = time.perf_counter() - start
    record_invocation(work, args.stage, words, finished, seconds, device, **extra)
    print(f"{args.stage}: {'done' if finished else 'paused'} in {time.perf_counter() - start:.1f} s")
    return 0 if finished else 3


if __name__ == "__main__":
    sys.exit(main())
