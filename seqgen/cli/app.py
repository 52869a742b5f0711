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
from seqgen.cli.console import error, message, set_quiet, stopped
from seqgen.errors import Interrupted, SeqgenError

# Each module under seqgen/cli/ named here has `register(app)`.
COMMAND_MODULES = ["tokenizer", "train", "music", "models", "inspect", "sample", "eval"]


class SeqgenGroup(TyperGroup):
    """Turns library errors into one red line and an exit code (2: usage/data, 1: other).

    With --debug the original exception propagates with its traceback.
    """

    def __init__(self, **attrs: Any):
        super().__init__(**attrs)
        # seqgen's own -q/--quiet and --debug are taken after any command too ('seqgen sample
        # CKPT -q'): each command gets a copy that sets the root's value
        own = [p for p in self.params if p.name in ("quiet", "debug")]
        for _, command in _commands(self):
            for p in own:
                if p.name not in {q.name for q in command.params}:
                    command.params.append(_after_command(p))

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
            elsewhere = _letter_elsewhere(self, getattr(e, "option_name", None))
            said = _choices_in_words(' '.join(e.format_message().split()))
            error(f"{said}{elsewhere} (see '{where} -h')")
            raise typer.Exit(2) from None
        except SeqgenError as e:
            if _debug(ctx):
                raise
            # Ctrl-C (or SIGTERM) is a normal way to stop: said plainly, exit code 130
            (stopped if isinstance(e, Interrupted) else error)(message(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            stopped("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # the reader of stdout has gone (`seqgen sample ... | head`): it has what it wanted,
            # a normal end (exit 0, as `yes | head` ends), without a second error at exit
            import os
            import sys

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):  # stdout is not a file (a test's capture)
                pass
            raise typer.Exit(0) from None
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


def _commands(group: Any, path: str = "") -> list[tuple[str, Any]]:
    """(name, command) for every command under `group`, its sub-groups' commands included
    ("inspect attention")."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((path + name, command))
        found += _commands(command, f"{path}{name} ")
    return found


def _after_command(option: Any) -> Any:
    """A copy of the root option `option` for a command: it sets the root's value."""
    import copy

    def take(ctx: typer.Context, param: Any, value: bool) -> bool:
        root = ctx.find_root()
        if value and root.obj is not None:
            root.obj[option.name] = True
            if option.name == "quiet":
                set_quiet(True)
        return value

    mine = copy.copy(option)
    mine.expose_value, mine.callback = False, take
    return mine


def _choices_in_words(said: str) -> str:
    """The parser's "Invalid value for '--to': Value error, 'mp3' is not one of 'midi', 'wav'."
    as "Invalid value for '--to': 'mp3' is not one of midi or wav"."""
    import re

    m = re.fullmatch(r"(Invalid value for .+?: )Value error, (.+?) is not one of (.+?)\.?", said)
    if m is None:
        return said
    names = [c.strip().strip("'") for c in m.group(3).split(",")]
    words = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"{m.group(1)}{m.group(2)} is not one of {words}"


def _letter_elsewhere(root: Any, opt: str | None) -> str:
    """For a short option a command lacks: what it means in the commands that have it (one
    meaning per letter in all of seqgen), e.g. " (-t is --temperature, in sample and eval)"."""
    if not opt or len(opt) != 2 or opt.startswith("--"):
        return ""
    names, where = set(), []
    for name, command in _commands(root):
        for p in getattr(command, "params", ()):
            if opt in getattr(p, "opts", ()) and getattr(p, "expose_value", True):
                names.add(next(o for o in p.opts if o.startswith("--")))
                where.append(name)
    if not names:
        return ""
    return f" ({opt} is {' / '.join(sorted(names))} in {', '.join(sorted(set(where)))})"


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


# Each short option means one thing in every command that has it (tests/test_cli_options.py
# checks this against the commands; README.md lists them too).
SHORT_OPTIONS = {
    "-b": ("--batch-size", "--batch"), "-c": ("--compare",), "-f": ("--format",),
    "-h": ("--help",), "-j": ("--jobs",), "-l": ("--layer",), "-m": ("--model",),
    "-n": ("--length",), "-o": ("--out", "--output", "--output-dir", "--plot"),
    "-p": ("--prompt",), "-q": ("--quiet",), "-r": ("--resume",), "-s": ("--seed",),
    "-t": ("--temperature",),
}

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
    epilog="Short options mean the same in every command that has them: "
    + ", ".join(f"{k} {' / '.join(v)}" for k, v in SHORT_OPTIONS.items() if k != "-h")
    + ". -q and --debug go before or after the command.",
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
