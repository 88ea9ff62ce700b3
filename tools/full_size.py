"""Full-size export and TensorRT-RTX build of Ideogram 4 with random weights (issue 7, docs/ARCHITECTURE.md §10).

Proves the toolkit at the released size — two 9.28 B-parameter DiTs, the Qwen3-VL-8B text encoder, the FLUX.2
VAE decoder — and records, per artifact: ONNX size, plan size, export seconds, build seconds and peak host RAM.
Weights are random (`make-tiny --config release`, drawn on the GPU when there is one): sizes, export and build
behaviour do not depend on their values. Nothing here executes an engine (no GPU TensorRT on these machines).

Every step runs the project's own CLI in a child process (what users run), timed, with that child's peak RSS
from wait4(). Results go to WORK/results.json after each step, so an interrupted run resumes where it stopped;
ONNX and plans are deleted once measured (64 GB of disk holds the 27 GB checkpoint plus one artifact's ONNX and
plan). The bf16 DiT (for the fp8-wo / bf16 plan-size ratio) comes last: its 18.6 GB ONNX and 18.6 GB plan only
fit once the checkpoint is deleted, which happens after its export.

    # on the H100 machine (TensorRT-RTX wheels installed; ~20 min):
    python tools/full_size.py --work /tmp/full --markdown $OUT/full_size.md
    # a CPU smoke run of every step at tiny widths (what tests would be too slow for):
    python tools/full_size.py --work /tmp/full-tiny --config tiny --markdown /tmp/full-tiny.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ideogram_trt.core.components import Component
from ideogram_trt.core.gpu import card_lines
from ideogram_trt.core.host import cpu_model, memory_gib, package_version
from ideogram_trt.core.manifest import Manifest
from ideogram_trt.core.sidecar import ExportSidecar

BUCKETS = "1024x1024,1536x1024,1024x1536"
COMPUTE_CAPABILITY = "8.9"  # the lowest FP8 target TensorRT-RTX accepts (research/feasibility.md §3)
# docs/MODEL.md §8.4 weight bytes the plans are checked against. The dit_cond graph leaves llm_cond_proj (53248→4608,
# E4M3 + F32 scale) to the text encoder (docs/MODEL.md §4.9), so its share moves from the DiT to the text encoder.
LLM_COND_PROJ_FP8 = 53248 * 4608 + 4608 * 4
SPEC_BYTES = {
    ("dit_cond", "fp8-wo"): 9_289_722_624 - LLM_COND_PROJ_FP8,
    ("dit_cond", "fp8"): 9_289_722_624 - LLM_COND_PROJ_FP8,
    ("dit_uncond", "fp8-wo"): 9_289_722_624 - LLM_COND_PROJ_FP8,
    ("dit_uncond", "fp8"): 9_289_722_624 - LLM_COND_PROJ_FP8,
    ("dit_cond", "bf16"): 18_558_576_896 - 2 * 53248 * 4608,
    ("text_encoder", "fp8-wo"): 8_200_000_000 + LLM_COND_PROJ_FP8,
}


@dataclass(frozen=True)
class Artifact:
    graph: str
    recipe: str
    frees_checkpoint: bool = False  # delete the checkpoint after exporting (the bf16 DiT needs the disk)
    quantize_attention: bool = False

    @property
    def key(self) -> str:
        return f"{self.graph}.{self.recipe}" + ("-qa" if self.quantize_attention else "")


ARTIFACTS = (
    Artifact("vae_decoder", "fp8-wo"),  # the VAE has no FP8 weights: every recipe exports the same graph
    Artifact("text_encoder", "fp8-wo"),
    Artifact("dit_cond", "fp8-wo"),
    Artifact("dit_uncond", "fp8-wo"),
    Artifact("dit_cond", "fp8"),
    Artifact("dit_uncond", "fp8"),
    Artifact("dit_cond", "fp8", quantize_attention=True),
    Artifact("dit_cond", "bf16", frees_checkpoint=True),
)


@dataclass
class StepResult:
    seconds: float
    peak_rss_gib: float
    returncode: int
    log: str


def run_step(name: str, args: list[str], logs: Path) -> StepResult:
    """Run ``python -m ideogram_trt ARGS`` and measure that child alone (wall time, peak RSS from wait4)."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    print(f"[{time.strftime('%H:%M:%S')}] {name}: ideogram-trt {' '.join(args)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "ideogram_trt", *args], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    result = StepResult(round(seconds, 1), round(usage.ru_maxrss / 2**20, 2), child.returncode, str(log))
    state = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode}); see {log}"
    print(f"    {seconds:.1f} s, peak RSS {result.peak_rss_gib} GiB: {state}", file=sys.stderr, flush=True)
    if result.returncode:
        print("    " + "\n    ".join(log.read_text().splitlines()[-8:]), file=sys.stderr, flush=True)
    return result


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Results:
    """WORK/results.json: what has been measured so far (a step with a result is not run again)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def __contains__(self, key: str) -> bool:
        return key in self.data and self.data[key].get("returncode") == 0

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def make_checkpoint(work: Path, config: str, device: str, results: Results) -> None:
    """The whole checkpoint, even for one artifact: exports validate every component's tensor headers."""
    if "checkpoint" in results:
        return
    args = ["make-tiny", str(work / "checkpoint"), "--config", config, "--device", device, "--overwrite"]
    step = run_step("checkpoint", args, work / "logs")
    sizes = {}
    if step.returncode == 0:
        for part in ("transformer", "unconditional_transformer", "text_encoder", "vae"):
            sizes[part] = folder_bytes(work / "checkpoint" / part)
    results.put("checkpoint", {**asdict(step), "bytes": sizes})


def calibrate(work: Path, device: str, resolution: str, results: Results) -> None:
    if "calibrate" in results:
        return
    dtype = "bf16" if device.startswith("cuda") else "fp32"
    args = ["calibrate", "--model", str(work / "checkpoint"), "--out", str(work / "calibration.json"), "--limit", "1"]
    args += ["--resolution", resolution, "--device", device, "--dtype", dtype, "--overwrite"]
    results.put("calibrate", {**asdict(run_step("calibrate", args, work / "logs")), "device": device, "dtype": dtype})


def export_and_build(work: Path, artifact: Artifact, buckets: str, max_text: int, results: Results) -> None:
    """Export one graph, build its plan, record both, delete both."""
    onnx_dir, set_dir = work / f"onnx-{artifact.key}", work / f"engines-{artifact.key}"
    export_key, build_key = f"export:{artifact.key}", f"build:{artifact.key}"
    if export_key not in results:
        shutil.rmtree(onnx_dir, ignore_errors=True)
        args = ["export", "--model", str(work / "checkpoint"), "--out", str(onnx_dir), "--recipe", artifact.recipe]
        args += ["--components", artifact.graph, "--dtype", "bf16"]
        if artifact.recipe == "fp8":
            args += ["--calibration", str(work / "calibration.json")]
        if artifact.quantize_attention:
            args += ["--quantize-attention"]
        step = run_step(export_key, args, work / "logs")
        record: dict[str, Any] = asdict(step)
        if step.returncode == 0:
            sidecar = ExportSidecar.load(onnx_dir, Component(artifact.graph))
            record |= {
                "onnx_bytes": folder_bytes(onnx_dir),
                "weights_bytes": sidecar.weights_bytes,
                "trace_seconds": None if sidecar.provenance is None else sidecar.provenance.export_seconds,
            }
        results.put(export_key, record)
        if step.returncode:
            return
    if artifact.frees_checkpoint and (work / "checkpoint").exists():
        shutil.rmtree(work / "checkpoint")
    if build_key not in results and onnx_dir.exists():
        shutil.rmtree(set_dir, ignore_errors=True)
        args = ["build-engines", "--onnx", str(onnx_dir), "--out", str(set_dir), "--flavor", "tensorrt-rtx"]
        args += ["--compute-capability", COMPUTE_CAPABILITY, "--buckets", buckets, "--components", artifact.graph]
        args += ["--max-text-tokens", str(max_text), "--recipe", artifact.recipe]
        step = run_step(build_key, args, work / "logs")
        record = asdict(step)
        if step.returncode == 0:
            manifest = Manifest.load(set_dir)
            plans = [e for e in manifest.engines.values() if e.graph is Component(artifact.graph)]
            record["plan_bytes"] = sum((set_dir / e.file).stat().st_size for e in plans)
            record["profiles"] = sum(len(e.profiles) for e in plans)
            # The plan's anatomy (issue 15) is small: keep it for `inspect --anatomy` and the modeled times.
            kept = work / "anatomy"
            kept.mkdir(exist_ok=True)
            for entry in plans:
                if entry.anatomy is not None:
                    shutil.copy(set_dir / entry.anatomy.file, kept / f"{artifact.key}.anatomy.json")
        results.put(build_key, record)
    shutil.rmtree(onnx_dir, ignore_errors=True)
    shutil.rmtree(set_dir, ignore_errors=True)


def gb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e9:.2f}"


def machine_line(machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in machine.get("packages", {}).items() if version)
    gpu = f"; the machine's GPU: {machine['gpu']}" if machine.get("gpu") else ""
    return (
        f"*{machine.get('date_utc', '?')}. {machine.get('cpu', '?')}, {machine.get('cpus', '?')} cores, "
        f"{machine.get('memory_gib', '?')} GiB RAM{gpu}. Python {machine.get('python', '?')}, {packages}.*"
    )


def markdown(results: Results, config: str) -> str:
    data = results.data
    lines = [machine_line(data["machine"]), ""] if "machine" in data else []
    lines += [
        "| artifact | recipe | ONNX GB | plan GB | plan / docs/MODEL.md §8.4 weights | plan / ONNX weights "
        "| export s (trace s) | export peak RSS GiB "
        "| build s | build peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for artifact in ARTIFACTS:
        export, build = data.get(f"export:{artifact.key}", {}), data.get(f"build:{artifact.key}", {})
        if not export:
            continue
        spec = SPEC_BYTES.get((artifact.graph, artifact.recipe)) if config == "release" else None
        plan = build.get("plan_bytes")
        ratio = f"{plan / spec:.3f}" if plan and spec else "–"
        weights = export.get("weights_bytes")
        own = f"{plan / weights:.3f}" if plan and weights else "–"
        failed = " (failed)" if export.get("returncode") or build.get("returncode") else ""
        lines.append(
            f"| {artifact.graph}{failed} | {artifact.recipe} | {gb(export.get('onnx_bytes'))} | {gb(plan)} "
            f"| {ratio} | {own} "
            f"| {export.get('seconds', '–')} ({export.get('trace_seconds', '–')}) | {export.get('peak_rss_gib', '–')} "
            f"| {build.get('seconds', '–')} | {build.get('peak_rss_gib', '–')} |"
        )
    bf16 = data.get("build:dit_cond.bf16", {}).get("plan_bytes")
    for recipe in ("fp8-wo", "fp8"):
        fp8 = data.get(f"build:dit_cond.{recipe}", {}).get("plan_bytes")
        if fp8 and bf16:
            lines.append(f"\n{recipe} / bf16 dit_cond plan size: **{fp8 / bf16:.3f}**")
    for key in ("checkpoint", "calibrate"):
        if key in data:
            step = data[key]
            extra = f", {gb(sum(step['bytes'].values()))} GB written" if step.get("bytes") else ""
            lines.append(f"\n{key}: {step['seconds']} s, peak RSS {step['peak_rss_gib']} GiB{extra}")
    return "\n".join(lines) + "\n"


def machine(device: str, config: str, buckets: str) -> dict[str, Any]:
    """Where and with what the run happened: exports and builds are host-CPU work, so the CPU, its RAM and the
    package versions matter; the card line only says which machine that host belonged to."""
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": "; ".join(card_lines()) or None,
        "python": platform.python_version(),
        "packages": {
            name: package_version(*dists)
            for name, dists in {
                "torch": ("torch",),
                "onnx": ("onnx",),
                "onnxscript": ("onnxscript",),
                "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
                "transformers": ("transformers",),
                "diffusers": ("diffusers",),
                "tensorrt_rtx": ("tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu13", "tensorrt-rtx"),
                "ideogram_trt": ("ideogram-trt",),
            }.items()
        },
        "device": device,
        "config": config,
        "buckets": buckets,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (needs ~64 GB at release size)")
    parser.add_argument("--config", choices=("release", "tiny"), default="release")
    parser.add_argument("--device", default=None, help="where random weights are drawn and calibration runs")
    parser.add_argument("--buckets", default=None, help=f"default {BUCKETS} (release), 256x256,256x384 (tiny)")
    parser.add_argument("--only", default=None, help="comma-separated artifact keys, e.g. dit_cond.fp8-wo")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    import torch  # only to pick the device

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    release = args.config == "release"
    buckets = args.buckets or (BUCKETS if release else "256x256,256x384")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = Results(work / "results.json")
    results.data["machine"] = machine(device, args.config, buckets)

    wanted = set(args.only.split(",")) if args.only else {a.key for a in ARTIFACTS}
    if unknown := wanted - {a.key for a in ARTIFACTS}:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(a.key for a in ARTIFACTS)}")
    chosen = [a for a in ARTIFACTS if a.key in wanted]
    make_checkpoint(work, args.config, device, results)
    if "checkpoint" not in results:
        return 1
    if any(a.recipe == "fp8" for a in chosen):  # only the fp8 recipe reads activation scales
        calibrate(work, device, "1024x1024" if release else "256x256", results)
    for artifact in chosen:
        if artifact.recipe == "fp8" and "calibrate" not in results:
            continue
        if not (work / "checkpoint").exists() and f"export:{artifact.key}" not in results:
            print(f"{artifact.key}: the checkpoint is gone (freed for bf16); skipped", file=sys.stderr)
            continue
        export_and_build(work, artifact, buckets, 2048 if release else 64, results)
    table = markdown(results, args.config)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
        if (work / "anatomy").is_dir():  # beside the table: the plans' anatomy files
            shutil.copytree(work / "anatomy", args.markdown.parent / "anatomy", dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
