"""Core tokenization (tokenizers + the checkpoint's chat template, no transformers) against transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.tokenization import MAX_TEXT_TOKENS, PromptTokenizer
from ideogram_trt.model.tiny_tokenizer import default_prompts

PROMPTS = [
    *default_prompts()[:6],
    "plain words, not JSON",
    "digits 1234567 and ünïcödé — dashes\nnew lines\n\n  and  spaces",
    '{"text":"HAPPY 30TH, MAYA!"}',
]


def reference_ids(hf_tokenizer, prompt: str) -> list[int]:
    """Exactly what Ideogram4Pipeline.encode_prompt does with its tokenizer."""
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    text = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return hf_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ids_match_transformers(checkpoint, reference_pipeline) -> None:
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    for prompt in PROMPTS:
        assert tokenizer.encode(prompt) == reference_ids(reference_pipeline.tokenizer, prompt), prompt


def test_chat_template_renders_one_user_turn(checkpoint) -> None:
    text = PromptTokenizer.from_dir(checkpoint.tokenizer_dir).render("hello")
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"  # docs/MODEL.md §3.2


def test_batch_is_left_padded_with_mask(checkpoint) -> None:
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    batch = tokenizer.batch(["short", PROMPTS[0]])
    long_ids, short_ids = tokenizer.encode(PROMPTS[0]), tokenizer.encode("short")
    assert batch.lengths == (len(short_ids), len(long_ids))
    assert batch.input_ids.dtype == batch.attention_mask.dtype == np.int32
    assert batch.text_tokens == len(long_ids)
    pad = len(long_ids) - len(short_ids)
    assert batch.attention_mask[0].tolist() == [0] * pad + [1] * len(short_ids)
    assert batch.input_ids[0, pad:].tolist() == short_ids
    assert batch.input_ids[1].tolist() == long_ids
    wide = tokenizer.batch(["short"], pad_to=64)
    assert wide.input_ids.shape == (1, 64) and int(wide.attention_mask.sum()) == len(short_ids)


def test_prompt_over_the_limit_is_refused_not_truncated(checkpoint) -> None:
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    prompt = " ".join(f"w{i}" for i in range(1500))
    with pytest.raises(InputError, match=rf"the limit is {MAX_TEXT_TOKENS}: shorten it"):
        tokenizer.encode(prompt)


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_refused(checkpoint, prompt: str) -> None:
    with pytest.raises(InputError, match="the prompt is empty"):
        PromptTokenizer.from_dir(checkpoint.tokenizer_dir).encode(prompt)


def test_missing_tokenizer_file_is_a_clear_error(tmp_path: Path) -> None:
    from ideogram_trt.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"tokenizer\.json: missing"):
        PromptTokenizer.from_dir(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("tokenizer_config.json", b"\xff\xfe{}", "not UTF-8"),
        ("tokenizer_config.json", b"{not json", "not valid JSON"),
        ("tokenizer_config.json", b"[1, 2]", "expected a JSON object, got list"),
        ("tokenizer_config.json", b'{"pad_token": 5, "chat_template": "x"}', "'pad_token' must be a string"),
        ("tokenizer_config.json", b"[" * 100000, "not valid JSON"),
        ("chat_template.json", b"\xff", "not UTF-8"),
        ("chat_template.jinja", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_broken_tokenizer_files_are_named(tiny_dir, tmp_path, name: str, content: bytes, needle: str) -> None:
    """Issue 12: each broken file of a tokenizer folder is one CheckpointError naming the file (not a crash)."""
    import json
    import shutil

    from ideogram_trt.core.errors import CheckpointError

    folder = tmp_path / "tokenizer"
    shutil.copytree(tiny_dir / "tokenizer", folder)
    if name != "tokenizer_config.json":  # make the loader reach the file under test
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        if name == "chat_template.json":
            (folder / "chat_template.jinja").unlink(missing_ok=True)
    (folder / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=needle) as error:
        PromptTokenizer.from_dir(folder)
    assert str(folder / name) in str(error.value) and "\n" not in str(error.value)


def test_the_token_limit_is_inclusive(checkpoint) -> None:
    """A prompt of exactly ``max_tokens`` ids is accepted; one id fewer allowed refuses it."""
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    prompt = PROMPTS[0]
    count = len(tokenizer.encode(prompt))
    assert len(tokenizer.encode(prompt, max_tokens=count)) == count
    with pytest.raises(InputError, match=rf"is {count} tokens after the chat template; the limit is {count - 1}"):
        tokenizer.encode(prompt, max_tokens=count - 1)
