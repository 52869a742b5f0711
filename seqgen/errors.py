"""Errors raised by seqgen's library code.

Library modules raise these and never print or exit; the CLI turns them into one red line on stderr
and an exit code: 2 for bad usage or bad data (the user can fix the input), 1 for anything else.
"""

from __future__ import annotations


class SeqgenError(Exception):
    """Base class of every error seqgen reports to the user."""

    exit_code = 1


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
