"""``ideogram-trt``: one entry point, one subcommand per job.

Errors the user can fix print as one ``error:`` line and exit 2; nothing prints a traceback unless
IDEOGRAM_TRT_DEBUG=1. Heavy imports (torch, transformers, diffusers) happen inside the subcommand that needs them,
so ``--help`` is instant and a serving install without them still runs the commands it can.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ideogram_trt import __version__
from ideogram_trt.core.errors import IdeogramTrtError

DEBUG_ENV = "IDEOGRAM_TRT_DEBUG"


def _make_tiny(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ideogram_trt.model.tiny import TinySpec, write_tiny_checkpoint

    spec = TinySpec(
        seed=args.seed,
        layers=args.layers,
        heads=args.heads,
        head_dim=args.head_dim,
        intermediate_size=args.intermediate_size,
        text_hidden=args.text_hidden,
        latent_channels=args.latent_channels,
    )
    console = Console(stderr=True)
    with console.status(f"writing a tiny checkpoint to {args.out}"):
        path = write_tiny_checkpoint(args.out, spec, overwrite=args.overwrite)
    console.print(f"tiny Ideogram 4 checkpoint (release FP8 layout, seed {args.seed}) written to [bold]{path}[/]")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ideogram_trt.model.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(args.checkpoint)
    table = Table(title=f"{checkpoint.root}", show_header=True)
    table.add_column("component")
    table.add_column("layout")
    table.add_column("shape")
    dit = checkpoint.transformer
    dit_shape = (
        f"{dit.num_layers} layers, {dit.num_attention_heads}x{dit.attention_head_dim} heads, "
        f"hidden {dit.hidden_size}, {dit.in_channels} latent channels"
    )
    for component, layout in checkpoint.dit_layouts.items():
        table.add_row(component, layout.value, dit_shape)
    te = checkpoint.text_encoder
    table.add_row(
        "text_encoder",
        "release (FP8 weight-only)" if checkpoint.text_encoder_fp8 else "floating",
        f"Qwen3-VL, {te.num_hidden_layers} layers, hidden {te.hidden_size}, vocab {te.vocab_size}",
    )
    vae = checkpoint.vae
    table.add_row("vae", "diffusers", f"AutoencoderKLFlux2, {vae.latent_channels} latent channels")
    console = Console()
    console.print(table)
    console.print("checkpoint OK")
    return 0


def _to_diffusers(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ideogram_trt.model.diffusers_layout import convert_to_diffusers

    console = Console(stderr=True)
    with console.status(f"converting {args.checkpoint} to the diffusers layout"):
        path = convert_to_diffusers(args.checkpoint, args.out, overwrite=args.overwrite)
    console.print(f"diffusers-layout copy (bf16) written to [bold]{path}[/]; load it with Ideogram4Pipeline")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ideogram-trt",
        description=(
            "Deploy Ideogram 4 on NVIDIA GPUs: checkpoints, ONNX export with FP8 Q/DQ, TensorRT engines per "
            "resolution bucket, a thin runtime and a Triton model repository."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ideogram-trt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    tiny = sub.add_parser(
        "make-tiny",
        help="write a tiny random checkpoint in the release layout",
        description=(
            "Write a tiny random Ideogram 4 checkpoint in exactly the official FP8 release layout "
            "(model_index.json, transformer/, unconditional_transformer/, text_encoder/, tokenizer/, vae/, "
            "scheduler/). Only widths shrink: 36 text-encoder layers, a VAE with 8x downsampling and 2x2 "
            "patches (16 pixels per token). The same seed writes the same bytes."
        ),
    )
    tiny.add_argument("out", type=Path, metavar="DIR", help="output folder (must not exist or be empty)")
    tiny.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tiny.add_argument("--layers", type=int, default=2, help="DiT blocks (release: 34; default 2)")
    tiny.add_argument("--heads", type=int, default=2, help="DiT attention heads (release: 18; default 2)")
    tiny.add_argument("--head-dim", type=int, default=32, help="DiT head dim (release: 256; default 32)")
    tiny.add_argument("--intermediate-size", type=int, default=128, help="DiT SwiGLU width (default 128)")
    tiny.add_argument("--text-hidden", type=int, default=32, help="text-encoder hidden size (default 32)")
    tiny.add_argument("--latent-channels", type=int, default=4, help="VAE latent channels (release: 32)")
    tiny.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    tiny.set_defaults(handler=_make_tiny)

    check = sub.add_parser(
        "check",
        help="validate a checkpoint folder and summarize it",
        description=(
            "Read every config and tensor header of an Ideogram 4 checkpoint (release FP8 layout or a "
            "diffusers-layout repack) and report the first problem, or a summary."
        ),
    )
    check.add_argument("checkpoint", type=Path, metavar="DIR")
    check.set_defaults(handler=_check)

    to_diffusers = sub.add_parser(
        "to-diffusers",
        help="convert a release-layout checkpoint to the diffusers layout (the reference)",
        description=(
            "Write a bf16 diffusers-layout copy that diffusers' Ideogram4Pipeline.from_pretrained loads "
            "correctly. (Loading the release layout directly into diffusers silently produces garbage.)"
        ),
    )
    to_diffusers.add_argument("checkpoint", type=Path, metavar="SRC")
    to_diffusers.add_argument("out", type=Path, metavar="DST")
    to_diffusers.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    to_diffusers.set_defaults(handler=_to_diffusers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except IdeogramTrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # unreadable input, unwritable output, full disk: the OS message names the path
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"error: {args.command} needs the '{exc.name}' package: pip install 'ideogram-trt[model]'",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"error: internal error in {args.command}: {type(exc).__name__}: {exc} "
            f"(set {DEBUG_ENV}=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
