"""User-facing errors: the CLI prints their message as one line and exits non-zero, never a traceback."""

from __future__ import annotations


class IdeogramTrtError(Exception):
    """Base class: the message names the problem and, where there is one, the fix."""

    exit_code = 2


class CheckpointError(IdeogramTrtError):
    """A checkpoint folder is missing a part, or a part has the wrong layout, shape, dtype or config value."""


class ConfigError(CheckpointError):
    """A config.json value is missing or out of range."""


class InputError(IdeogramTrtError):
    """A request cannot be served as asked: prompt too long or empty, unsupported size, unknown preset."""


class EngineOutputError(IdeogramTrtError):
    """The engines returned something no image can come from (NaN or Inf latents): the checkpoint or the engine
    set is broken, not the request."""
