"""Prompt → token ids exactly as the reference pipelines do it (docs/MODEL.md §3.2), without transformers.

Each prompt is wrapped in the checkpoint's own chat template (one user turn, generation prompt, no system
message), tokenized with ``add_special_tokens=False``, refused above 2048 tokens (never truncated), and a batch
is left-padded with an attention mask of 1 on real tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from ideogram_trt.core.errors import CheckpointError, InputError

MAX_TEXT_TOKENS = 2048  # docs/MODEL.md §3.2: every reference refuses longer prompts
# A prompt's UTF-8 length is checked before anything renders or tokenizes it, so a huge one (a 16 MB request to
# Triton) is refused in microseconds instead of being tokenized first. The bound is generous, never tight: one
# token covers at most MAX_TOKEN_BYTES bytes of text (byte-level BPE vocabularies such as Qwen2's stay well under
# it; PromptTokenizer raises the bound for a vocabulary with longer tokens), so a prompt over the byte limit cannot
# fit in the token limit, and prompts under it still get the exact token count check.
MAX_TOKEN_BYTES = 128
MAX_PROMPT_BYTES = MAX_TEXT_TOKENS * MAX_TOKEN_BYTES  # 256 KiB


def prompt_byte_limit(max_tokens: int = MAX_TEXT_TOKENS, token_bytes: int = MAX_TOKEN_BYTES) -> int:
    """The most UTF-8 bytes a prompt of at most ``max_tokens`` tokens can have (generously)."""
    return max(MAX_PROMPT_BYTES, max_tokens * token_bytes)


def check_prompt_size(size: int, max_tokens: int = MAX_TEXT_TOKENS, token_bytes: int = MAX_TOKEN_BYTES) -> None:
    """Refuse a prompt of ``size`` UTF-8 bytes that cannot fit in ``max_tokens`` tokens (before tokenizing it)."""
    limit = prompt_byte_limit(max_tokens, token_bytes)
    if size > limit:
        raise InputError(
            f"the prompt is {size} bytes; prompts longer than {limit} bytes cannot fit in the {max_tokens}-token "
            "limit: shorten it"
        )


@dataclass(frozen=True)
class TokenBatch:
    """A left-padded batch: ``input_ids`` and ``attention_mask`` int32 [B, T], ``lengths`` the real counts."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    lengths: tuple[int, ...]

    @property
    def text_tokens(self) -> int:
        return int(self.input_ids.shape[1])


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class PromptTokenizer:
    """The checkpoint's ``tokenizer/`` folder: ``tokenizer.json`` plus the chat template."""

    def __init__(self, tokenizer: Tokenizer, chat_template: str, pad_token_id: int, source: str) -> None:
        self._tokenizer = tokenizer
        self._pad_token_id = pad_token_id
        self._source = source
        longest = max((len(token.encode()) for token in tokenizer.get_vocab()), default=0)
        self._token_bytes = max(MAX_TOKEN_BYTES, longest)  # a generous, never tight, bytes-per-token bound
        # The environment transformers renders chat templates in, so real checkpoints' templates behave alike.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise_exception
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        try:
            self._template = env.from_string(chat_template)
        except TemplateError as exc:
            raise CheckpointError(f"{source}: the chat template does not parse: {exc}") from exc

    @classmethod
    def from_dir(cls, path: str | Path) -> PromptTokenizer:
        folder = Path(path)
        tokenizer_file = folder / "tokenizer.json"
        config_file = folder / "tokenizer_config.json"
        if not tokenizer_file.is_file():
            raise CheckpointError(f"{tokenizer_file}: missing; the tokenizer folder needs tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise CheckpointError(f"{tokenizer_file}: not a readable tokenizers file ({exc})") from exc
        config = _read_object(config_file) if config_file.is_file() else {}
        template = _find_chat_template(folder, config)
        pad_token = config.get("pad_token", "<|endoftext|>")
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "<|endoftext|>")
        if not isinstance(pad_token, str):
            raise CheckpointError(f"{config_file}: 'pad_token' must be a string or an object with 'content'")
        pad_id = tokenizer.token_to_id(str(pad_token))
        return cls(tokenizer, template, pad_id if pad_id is not None else 0, str(folder))

    def render(self, prompt: str) -> str:
        """The templated text for one prompt: one user turn with a text part, then the generation prompt."""
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        try:
            return self._template.render(messages=messages, add_generation_prompt=True)
        except TemplateError as exc:
            raise CheckpointError(f"{self._source}: the chat template failed to render: {exc}") from exc

    def check_size(self, size: int, max_tokens: int = MAX_TEXT_TOKENS) -> None:
        """Refuse a prompt of ``size`` UTF-8 bytes too long for ``max_tokens`` of this vocabulary, untokenized."""
        check_prompt_size(size, max_tokens, self._token_bytes)

    def encode(self, prompt: str, max_tokens: int = MAX_TEXT_TOKENS) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the prompt is empty: give a non-empty prompt (Ideogram 4 expects a JSON caption)")
        self.check_size(len(prompt.encode("utf-8", "surrogatepass")), max_tokens)
        ids = self._tokenizer.encode(self.render(prompt), add_special_tokens=False).ids
        if len(ids) > max_tokens:
            raise InputError(
                f"the prompt is {len(ids)} tokens after the chat template; the limit is {max_tokens}: shorten it"
            )
        return list(ids)

    def batch(self, prompts: list[str], pad_to: int | None = None, max_tokens: int = MAX_TEXT_TOKENS) -> TokenBatch:
        """Tokenize and left-pad to the longest prompt (or to ``pad_to``)."""
        if not prompts:
            raise InputError("no prompts given")
        encoded = [self.encode(p, max_tokens) for p in prompts]
        lengths = tuple(len(ids) for ids in encoded)
        width = max(lengths) if pad_to is None else pad_to
        if width < max(lengths):
            raise InputError(f"pad_to={pad_to} is shorter than the longest prompt ({max(lengths)} tokens)")
        input_ids = np.full((len(prompts), width), self._pad_token_id, dtype=np.int32)
        attention_mask = np.zeros((len(prompts), width), dtype=np.int32)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = ids
            attention_mask[row, width - len(ids) :] = 1
        return TokenBatch(input_ids=input_ids, attention_mask=attention_mask, lengths=lengths)


def _read_object(path: Path) -> dict[str, object]:
    """A tokenizer folder's JSON object file, or one line naming what is wrong with it."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _find_chat_template(folder: Path, config: dict[str, object]) -> str:
    template = config.get("chat_template")
    if isinstance(template, str) and template:
        return template
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        try:
            return jinja_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{jinja_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    json_file = folder / "chat_template.json"
    if json_file.is_file():
        value = _read_object(json_file).get("chat_template")
        if isinstance(value, str) and value:
            return value
    raise CheckpointError(
        f"{folder}: no chat template (looked in tokenizer_config.json, chat_template.jinja, chat_template.json)"
    )
