"""Errors raised by seqgen's library code.

Library modules raise these and never print or exit; the CLI turns them into one red line on stderr
and an exit code: 2 for bad usage or bad data (the user can fix the input), 1 for anything else.

A message names the config fields it is about in backticks, as the library knows them:

    raise UsageError(f"`seq_len` ({n}) must not exceed `context_length` ({c})", config=TrainConfig)

`str(e)` reads "seq_len (100) must not exceed context_length (64)"; the CLI shows each field as
its option, declared with the field in `config` (seqgen/config.py, `flag_of`): "--seq-len (100)
must not exceed --context-length (64)". Backticks mark fields only in an error given `config`, or
`params=True` for the parameters of a function (their options are their names with dashes); any
other message is shown as it is (user text quoted in it may hold backticks: ABC's beam breaks).
"""

from __future__ import annotations

import re
from collections.abc import Callable

FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")  # a field named in a message


class SeqgenError(Exception):
    """Base class of every error seqgen reports to the user."""

    exit_code = 1

    def __init__(self, message: str = "", *, config: type | None = None,
                 params: bool = False) -> None:
        named = config is not None or params
        super().__init__(FIELD.sub(r"\1", message) if named else message)
        self.marked = message if named else None  # the message with its fields in backticks
        self.config = config  # the dataclass that declares them

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields the message names, in order (the first is what it is about)."""
        return tuple(FIELD.findall(self.marked)) if self.marked is not None else ()

    @property
    def field(self) -> str | None:
        return self.fields[0] if self.fields else None

    def spelled(self, name: Callable[[str], str]) -> str:
        """The message with each field it names written as `name(field)` (the CLI: its option)."""
        if self.marked is None:
            return str(self)
        return FIELD.sub(lambda m: name(m[1]), self.marked)


class UsageError(SeqgenError):
    """A bad option value or a combination of options that cannot work."""

    exit_code = 2


class DataError(SeqgenError):
    """A corpus, vocabulary, ABC file or other input that cannot be used as it is."""

    exit_code = 2


class VocabularyError(DataError):
    """Text with characters the vocabulary does not know, or a malformed vocabulary file."""


class CheckpointError(DataError):
    """A checkpoint directory that is missing, corrupt, hostile or of an unknown format."""


class TrainingError(SeqgenError):
    """Training could not go on (for example the loss became NaN)."""


class Interrupted(SeqgenError):
    """Work stopped by Ctrl-C or SIGTERM after saving what it had."""

    exit_code = 130


def restated(error: type[SeqgenError], cause: BaseException,
             message: Callable[[str], str]) -> SeqgenError:
    """An `error` whose message is `message(the cause's message)`, naming the fields the cause
    names (a checkpoint's bad config: the CLI shows their options as it would for the cause)."""
    if isinstance(cause, SeqgenError) and cause.marked is not None:
        return error(message(cause.marked), config=cause.config, params=True)
    return error(message(str(cause)))
