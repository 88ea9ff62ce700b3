"""What ``ideogram-trt verify`` found, typed: one ``Check`` per thing it checked, and the ``Report`` that holds them,
the machine and the exact command, written as JSON (docs/verify_report.schema.json) and Markdown (docs/VERIFY.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

REPORT_FORMAT = 1


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"  # could not be checked here; the detail says why
    INFO = "INFO"  # a measurement with no bound (a time with nothing modeled to compare it with)


class CheckKind(str, Enum):
    ENGINE_SET = "engine_set"  # what `inspect` checks: this machine, the files, the set's structure
    PROVENANCE = "provenance"  # the checkpoint and calibration the set was built from
    TOKENIZER = "tokenizer"
    PROFILES = "profiles"  # the plans' optimization profiles against the manifest's
    ENGINE = "engine"  # one engine, one input, against the PyTorch reference
    END_TO_END = "end_to_end"  # a whole request against the PyTorch pipeline
    TIMING = "timing"


@dataclass(frozen=True)
class Check:
    kind: CheckKind
    name: str  # e.g. "dit_cond@256x256 T=7" — unique within a report
    status: Status
    metric: str = ""  # "snr_db", "psnr_db", "ratio", "ms" … (empty for a yes/no check)
    value: float | None = None
    bound: float | None = None  # the value must be >= bound for snr/psnr, <= bound for a ratio
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["kind"], body["status"] = self.kind.value, self.status.value
        for key in ("value", "bound"):  # JSON has no inf: a bit-exact match is reported as null with a detail
            number = body[key]
            if number is not None and not math.isfinite(number):
                body[key] = None
        return body


def passed_if(condition: bool) -> Status:
    return Status.PASS if condition else Status.FAIL


@dataclass
class Report:
    command: str
    created: str  # ISO 8601, UTC
    machine: dict[str, Any]
    engine_set: dict[str, Any]
    reference: dict[str, Any]
    bounds: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    version: str = ""
    format: int = REPORT_FORMAT

    @property
    def passed(self) -> bool:
        return not any(check.status is Status.FAIL for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status is Status.FAIL]

    def counts(self) -> dict[str, int]:
        return {status.value: sum(c.status is status for c in self.checks) for status in Status}

    def to_json(self) -> str:
        body = {
            "format": self.format,
            "tool": "ideogram-trt verify",
            "version": self.version,
            "created": self.created,
            "command": self.command,
            "passed": self.passed,
            "counts": self.counts(),
            "machine": self.machine,
            "engine_set": self.engine_set,
            "reference": self.reference,
            "bounds": self.bounds,
            "checks": [check.to_json() for check in self.checks],
        }
        return json.dumps(body, indent=1) + "\n"

    def to_markdown(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL ({len(self.failures)} of {len(self.checks)} checks)"
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        lines = [
            f"# ideogram-trt verify: {verdict}",
            "",
            f"`{self.command}`" if self.command else "",
            "",
            f"{self.created} · ideogram-trt {self.version} · {counts}",
            "",
            "## Machine",
            "",
            *(f"- {key}: {_plain(value)}" for key, value in self.machine.items()),
            "",
            "## Engine set",
            "",
            *(f"- {key}: {_plain(value)}" for key, value in self.engine_set.items()),
            "",
            "## Reference",
            "",
            *(f"- {key}: {_plain(value)}" for key, value in self.reference.items()),
            "",
            "## Checks",
            "",
            "| status | kind | check | value | bound | detail |",
            "|---|---|---|---:|---:|---|",
        ]
        for check in self.checks:
            value = format_value(check.value, check.metric)
            lines.append(
                f"| {check.status.value} | {check.kind.value} | {check.name} | {value} | {format_bound(check)} | "
                f"{_cell(check.detail)} |"
            )
        lines += ["", "Bounds: " + _plain(self.bounds), ""]
        return "\n".join(lines)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "none"
    return str(value)


def format_value(value: float | None, metric: str) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return "exact"
    unit = {"snr_db": " dB", "psnr_db": " dB", "ms": " ms", "ratio": "×"}.get(metric, "")
    return f"{value:.4g}{unit}"


def format_bound(check: Check) -> str:
    if check.bound is None:
        return ""
    relation = "≤" if check.metric == "ratio" else "≥"
    return f"{relation} {format_value(check.bound, check.metric)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
