"""Prompts from the command line and from prompt files, checked before any engine runs (no torch here: a serving
install reads prompt files too).

A prompt file is UTF-8 text: a ``.jsonl`` file holds one JSON object with a string ``"prompt"`` per line, any
other file one prompt per line; blank lines are skipped. Every refusal names the file, the line and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ideogram_trt.core.errors import InputError

# A prompt is at most 2048 tokens (docs/MODEL.md §3.2), a few KB of text; 10 000 prompts or 64 MiB is far more than one
# run of `generate` or `calibrate` uses, and small enough to hold in memory. Anything bigger is a wrong file.
MAX_PROMPT_FILE_BYTES = 64 * 2**20
MAX_PROMPT_FILE_LINES = 10_000


def check_prompt(prompt: object, where: str) -> str:
    """``prompt`` as a str that is valid Unicode (encodable as UTF-8), or a one-line refusal naming ``where``."""
    if not isinstance(prompt, str):
        raise InputError(f"{where}: the prompt must be text, got {type(prompt).__name__} {prompt!r:.60}")
    if not prompt.strip():
        raise InputError(f"{where} is empty: give a non-empty prompt (Ideogram 4 expects a JSON caption)")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Command-line bytes that are not UTF-8 arrive as surrogate escapes (PEP 383): show the original bytes.
        bad = _original_bytes(prompt[exc.start : exc.end])
        raise InputError(
            f"{where}: not valid UTF-8 (bytes {bad!r} at character {exc.start}); write the prompt in UTF-8 "
            "(e.g. convert it with `iconv -t UTF-8`)"
        ) from None
    return prompt


def _original_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (e.g. \ud800 from a JSON escape)
        return text.encode("utf-8", "backslashreplace")


def read_prompt_file(path: Path) -> list[str]:
    """The prompts of ``path`` (see the module docstring); refuses a missing, non-regular, non-UTF-8, oversized
    or empty file and a ``.jsonl`` line that is not an object with a non-empty string ``"prompt"``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: prompt file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompt file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InputError(f"{path}: {kind}; --prompt-file takes a text or .jsonl file of prompts")
    if info.st_size > MAX_PROMPT_FILE_BYTES:
        raise InputError(f"{path}: {info.st_size} bytes, above the {MAX_PROMPT_FILE_BYTES} byte limit: split it")
    with open(path, "rb") as handle:
        data = handle.read(MAX_PROMPT_FILE_BYTES + 1)
    if len(data) > MAX_PROMPT_FILE_BYTES:  # it grew while we read
        raise InputError(f"{path}: above the {MAX_PROMPT_FILE_BYTES} byte limit: split it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not valid UTF-8 (byte {data[exc.start : exc.start + 1]!r}); save the file as UTF-8 "
            "(e.g. `iconv -t UTF-8`)"
        ) from None
    lines = [(number, line.rstrip("\r")) for number, line in enumerate(text.split("\n"), 1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    if len(lines) > MAX_PROMPT_FILE_LINES:
        raise InputError(f"{path}: {len(lines)} prompts, above the limit of {MAX_PROMPT_FILE_LINES}: split the file")
    prompts = [_jsonl_prompt(path, n, line) if path.suffix == ".jsonl" else line for n, line in lines]
    if not prompts:
        raise InputError(f"{path}: no prompts (the file is empty or blank)")
    return [check_prompt(prompt, f"{path}:{n}") for (n, _), prompt in zip(lines, prompts, strict=True)]


def _jsonl_prompt(path: Path, number: int, line: str) -> str:
    fix = 'every line of a .jsonl prompt file must be a JSON object like {"prompt": "..."}'
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{number}: not JSON ({exc.msg}); {fix}") from None
    if not isinstance(record, dict) or "prompt" not in record:
        raise InputError(f"{path}:{number}: no 'prompt' field; {fix}")
    prompt = record["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{path}:{number}: 'prompt' is {prompt!r:.60}, not a non-empty string; {fix}")
    return prompt
