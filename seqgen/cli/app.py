"""The root `seqgen` command: global options, the error boundary, and the command modules.

Command modules import torch, numpy and music21 inside their functions, never at module level, so
that `seqgen --help` stays instant.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from seqgen import __version__
from seqgen.cli.console import error, message, set_quiet
from seqgen.errors import SeqgenError

# Each module under seqgen/cli/ named here has `register(app)`.
COMMAND_MODULES = ["tokenizer", "train", "music", "models", "inspect", "sample", "eval"]


class SeqgenGroup(TyperGroup):
    """Turns library errors into one red line and an exit code (2: usage/data, 1: other).

    With --debug the original exception propagates with its traceback.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as e:  # a bad option or argument, found by Typer's parser
            usage = getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message")
            if _debug(ctx) or not usage or type(e).__name__ == "NoArgsIsHelpError":
                raise  # (NoArgsIsHelpError prints the help, as it should)
            where = getattr(getattr(e, "ctx", None), "command_path", None) or "seqgen"
            opt = getattr(e, "option_name", None)
            if opt in ("-q", "--quiet", "--debug") and where != "seqgen":
                error(f"{opt} is an option of seqgen itself: put it before the command "
                      f"('seqgen {opt} {where.split(' ', 1)[1]} ...')")
            else:
                error(f"{' '.join(e.format_message().split())} (see '{where} -h')")
            raise typer.Exit(2) from None
        except SeqgenError as e:
            if _debug(ctx):
                raise
            error(message(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # the reader of stdout has gone (`seqgen sample ... | head`): stop quietly with 1,
            # as rich's console does for the tables, without a second error at exit
            import os
            import sys

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):  # stdout is not a file (a test's capture)
                pass
            raise typer.Exit(1) from None
        except Exception as e:  # an unexpected failure: still one line, unless --debug
            if _debug(ctx):
                raise
            memory = _out_of_memory(e)
            if memory:
                error(memory)
            else:
                error(f"{type(e).__name__}: {e} (this is a bug in seqgen; rerun with --debug "
                      "for the traceback)")
            raise typer.Exit(1) from None


def _out_of_memory(e: Exception) -> str | None:
    """A one-line message when `e` is the machine (or GPU) running out of memory, else None."""
    import re

    text = str(e)
    if not (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "not enough memory" in text):
        return None
    m = re.search(r"allocate (\d+) bytes", text)
    wanted = f" (it asked for {int(m.group(1)) / 2**30:,.1f} GiB at once)" if m else ""
    return (f"out of memory{wanted}; use a smaller model (--hidden-size, --num-layers) or fewer "
            "rows at once (--batch-size, --seq-len, --num-samples)")


def _debug(ctx: typer.Context) -> bool:
    obj = ctx.find_root().obj
    return bool(obj and obj.get("debug"))


app = typer.Typer(
    name="seqgen",
    cls=SeqgenGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Train character-level sequence models (RNN, LSTM, GRU, transformer) on your own text or "
    "tunes, sample from them, and turn sampled ABC tunes into MIDI.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only results (no logs or progress)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = {"debug": debug, "quiet": quiet}
    set_quiet(quiet)


for _name in COMMAND_MODULES:
    importlib.import_module(f"seqgen.cli.{_name}").register(app)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwind as Ctrl-C does: temporary files removed, exit 130


def _dropped(unraisable: Any) -> None:
    """sys.unraisablehook: a Ctrl-C or SIGTERM whose KeyboardInterrupt was raised where Python
    cannot pass it on (a __del__, a weakref callback, a fork's hooks) would be dropped with an
    "Exception ignored" message and the command would run on; interrupt again a moment later
    instead (SIGALRM, whose handler raises it), so that it arrives in the command's own code.
    The timer is set at once: a signal handled in this hook's own code would be dropped too."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    sys.__unraisablehook__(unraisable)


def stop_on_signals() -> None:
    """SIGTERM (kill, a scheduler) stops a command as Ctrl-C does (training saves first), and
    neither is lost where Python drops exceptions (POSIX: with SIGALRM, `_dropped`). Only
    `main` installs this: library callers keep their own handlers."""
    try:
        signal.signal(signal.SIGTERM, _terminated)
        if hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, _terminated)
            sys.unraisablehook = _dropped
    except ValueError:  # (not the main thread)
        pass


def main() -> None:
    stop_on_signals()
    app(prog_name="seqgen")
