"""`seqgen eval`: held-out loss and, for ABC models, the musical quality of sampled tunes."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from seqgen.cli.console import console, info, plural, result

PT = "Tunes (ABC models)"


class Format(str, Enum):
    table = "table"
    json = "json"


class Constrain(str, Enum):
    both = "both"
    abc = "abc"
    none = "none"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _top(d: dict[str, int], n: int = 4) -> str:
    total = sum(d.values()) or 1
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in list(d.items())[:n])


def _bars(q: dict[str, float]) -> str:
    if not q:
        return "-"
    return f"{q['median']:.0f} ({q['p10']:.0f}-{q['p90']:.0f})"


def render(report) -> None:
    """The report as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    t = Table(title=f"seqgen eval {report.checkpoint}", show_header=False, title_justify="left")
    t.add_column("what")
    t.add_column("value")
    t.add_row("held-out", f"{plural(report.val_documents, 'document')} of {report.corpus}, "
              f"{plural(report.val_tokens, 'character')}")
    t.add_row("validation loss", f"{report.val_loss:.4f} nats/char ({report.val_bpc:.3f} bits/char)")
    out.print(t)
    if not report.modes:
        return
    ref = report.corpus_stats
    cfg = report.config
    tops = {st.top_p for st in report.modes}
    top = (f"top-p {tops.pop():g}" if len(tops) == 1 else "top-p " + ", ".join(
        f"{st.top_p:g} with --constrain {st.mode}" for st in report.modes))
    q = Table(title=f"{cfg['tunes']} tunes per column, seed {cfg['seed']}, temperature "
              f"{cfg['temperature']:g}, {top}", title_justify="left")
    q.add_column("")
    for st in report.modes:
        q.add_column(f"--constrain {st.mode}", justify="right")
    q.add_column("training tunes", justify="right")
    m = report.modes

    def row(name: str, values: list[str], ref_value: str = "") -> None:
        q.add_row(name, *values, ref_value)

    row("ended within --length", [_pct(s.finished) for s in m])
    row("converts to MIDI", [_pct(s.converts) for s in m])
    row("headers X M L K", [_pct(s.headers) for s in m])
    row("mean metrical share", [_pct(s.metrical) for s in m])
    row("ends with a barline", [_pct(s.ends_with_barline) for s in m])
    row("VALID", [f"[bold]{_pct(s.valid)}[/]" for s in m])
    row("copies training data", [_pct(s.copies) for s in m])
    row("meters", [_top(s.meters) for s in m], _top(ref.meters) if ref else "")
    row("meter distance (TVD)", [f"{s.meter_tvd:.2f}" if s.meter_tvd is not None else "-"
                                 for s in m], "0")
    row("keys", [_top(s.keys) for s in m], _top(ref.keys) if ref else "")
    row("key distance (TVD)", [f"{s.key_tvd:.2f}" if s.key_tvd is not None else "-" for s in m],
        "0")
    row("bars: median (p10-p90)", [_bars(s.bars) for s in m], _bars(ref.bars) if ref else "")
    _form_rows(row, m, ref)
    row("why not VALID", [_top(s.reasons, 3) or "-" for s in m])
    row("sampling / checking", [f"{s.sample_seconds:.1f} s / {s.check_seconds:.1f} s" for s in m])
    out.print(q)


# (label, FormStats field): the form measures (docs/quality.md "Form"), as shares
FORM_ROWS = (
    ("AABB, 8-bar parts", "aabb"),
    ("parts of 8 bars", "eight_bar_parts"),
    ("parts of 1-4 bars", "fragments"),
    ("bars recurring (mean)", "recurring"),
    ("no bar repeated", "no_repeated_bar"),
    ("opening bars return", "opening_returns"),
    ("last note the tonic", "last_note_tonic"),
    ("with an accidental", "accidentals"),
)


def _form_rows(row, modes, ref) -> None:
    """The form measures of each mode and of the training tunes."""
    if all(s.form is None for s in modes):
        return
    ref_form = ref.form if ref is not None else None
    for label, name in FORM_ROWS:
        row(label, [_pct(getattr(s.form, name)) if s.form else "-" for s in modes],
            _pct(getattr(ref_form, name)) if ref_form else "")
    row("forms", [_top(s.form.forms, 3) if s.form else "-" for s in modes],
        _top(ref_form.forms, 3) if ref_form else "")


def eval_command(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Argument(
        None, help="A checkpoint directory (a run directory or its best/). Default: best/ of the "
        "newest run under checkpoints/, else the shipped default model ('default' names it).",
        show_default=False),
    corpus: str | None = typer.Option(
        None, "--corpus", help="Score and compare against this corpus instead of the one the "
        "checkpoint trained on (its held-out split, same --val-fraction and seed).",
        show_default=False),
    tunes: int = typer.Option(
        100, "--tunes", help="ABC models: tunes sampled per mode (0: loss only).",
        rich_help_panel=PT),
    seed: int = typer.Option(1234, "--seed", "-s", help="Random seed of the sampled tunes (the same "
                             "for every mode).", rich_help_panel=PT),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Sampling temperature (> 0).",
                                      rich_help_panel=PT),
    top_p: float | None = typer.Option(
        None, "--top-p", help="Sample only among the most likely characters whose probabilities "
        "add up to p, in (0, 1] (1 = all). Default: as seqgen sample (for ABC models 0.95 "
        "with the ABC constraint, 0.9 without).",
        rich_help_panel=PT, show_default=False),
    length: int | None = typer.Option(
        None, "--length", "-n", help="Characters per tune, at most. Default: as seqgen sample --tunes "
        "(1500).", rich_help_panel=PT, show_default=False),
    constrain: Constrain = typer.Option(
        Constrain.both, "--constrain", help="Sample with the ABC constraint (abc), without "
        "(none), or both side by side at the same seed.", rich_help_panel=PT),
    eval_tokens: int = typer.Option(
        0, "--eval-tokens", help="Score at most this many held-out characters (0: all)."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Worker processes for the music check.",
                             rich_help_panel=PT),
    fmt: Format = typer.Option(Format.table, "--format", "-f",
                               help="table (rich tables) or json (one object) on stdout."),
    form: str | None = typer.Option(
        None, "--form", help="The tunes' parts, as seqgen sample --form (AABB, AB, AABA; "
        "corpus: each tune's drawn from the training tunes, the default where the checkpoint "
        "has them; free: none): the --constrain abc column follows it.", rich_help_panel=PT,
        show_default=False),
    bars: int | None = typer.Option(
        None, "--bars", help="With a --form of letters: bars in each part (1-64). Default: 8.",
        rich_help_panel=PT, show_default=False),
    cadence: str = typer.Option("tonic", "--cadence", help="With --form: tonic (the last note "
                                "is the tonic of K:) or free.", rich_help_panel=PT),
    repeat_bars: bool = typer.Option(
        True, "--repeat-bars/--no-repeat-bars", help="As seqgen sample --repeat-bars: bars "
        "return where a training tune of the tune's form repeats its bars.", rich_help_panel=PT),
    whole_header: bool = typer.Option(
        True, "--whole-header/--no-whole-header", help="As seqgen sample --whole-header: the "
        "tune's header drawn without top-p.", rich_help_panel=PT),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads for torch (default: 1, the fastest for one small "
        "model on CPU, and kind to a shared machine).",
        show_default=False),
) -> None:
    """Evaluate a checkpoint: validation loss and bits per character on the held-out documents;
    for ABC models also the music check of sampled tunes (rates, meters, keys, lengths, novelty),
    with and without the ABC constraint."""
    from seqgen.devices import check_threads

    check_threads(threads)

    import torch

    from seqgen.checkpoint import load_checkpoint
    from seqgen.evaluate import EvalConfig, evaluate, resolve_checkpoint

    torch.set_num_threads(threads or 1)
    config = EvalConfig(corpus=corpus, tunes=tunes, seed=seed, temperature=temperature,
                        top_p=top_p, constrain=constrain.value, eval_tokens=eval_tokens,
                        jobs=jobs, form=form, bars=bars, cadence=cadence,
                        repeat_bars=repeat_bars, whole_header=whole_header,
                        **({} if length is None else {"length": length}))
    config.validate()
    path = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    if ckpt.corpus_kind != "abc":
        typed = [p for p in ("form", "tunes", "seed", "temperature", "top_p", "length",
                             "constrain", "jobs", "bars", "cadence", "repeat_bars",
                             "whole_header")
                 if getattr(ctx.get_parameter_source(p), "name", None) == "COMMANDLINE"
                 and not (p == "tunes" and tunes == 0)]  # --tunes 0: loss only, as it will be
        if typed:
            from seqgen.config import flag_of
            from seqgen.errors import UsageError

            raise UsageError(f"{flag_of(EvalConfig, typed[0])}: {ckpt.path} was trained on "
                             "text, and the tune options apply to ABC models; drop it (eval "
                             "scores the held-out loss)")
    info(f"{ckpt.path}: {ckpt.meta.get('summary', ckpt.model_config.kind)}, step {ckpt.step:,}")
    with console.status("evaluating...") as status:
        report = evaluate(ckpt, config, progress=lambda msg: status.update(msg + "..."),
                          notify=info)
    if fmt is Format.json:
        result(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        render(report)
    info(f"evaluated in {report.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
