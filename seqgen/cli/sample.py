"""`seqgen sample`: generate text or tunes from a trained checkpoint, streaming to stdout."""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from seqgen.cli.console import console, info, result, unescape, warn

PS = "Sampling"
PO = "Output"


SEPARATOR = "-" * 15  # the line between text samples on stdout (nanoGPT's)


class Format(str, Enum):
    text = "text"
    json = "json"


class Unknown(str, Enum):
    strict = "strict"
    skip = "skip"


# The options of `seqgen sample`, declared once each (their help is the --help text).
Checkpoint = Annotated[Path | None, typer.Argument(
    help="A checkpoint directory (a run directory or its best/), or 'default' for the "
    "model shipped with seqgen. Default: best/ of the newest run under checkpoints/, else "
    "the shipped model.",
    show_default=False)]
Prompt = Annotated[str, typer.Option(
    "--prompt", "-p", help="Text the samples continue; \\n and \\t mean newline and tab. "
    "With --tunes, default 'X:'.", rich_help_panel=PS, show_default=False)]
PromptFile = Annotated[Path | None, typer.Option(
    "--prompt-file", help="Read the prompt from this UTF-8 file (taken as it is).",
    rich_help_panel=PS, show_default=False)]
Length = Annotated[int | None, typer.Option(
    "--length", "-n", help="Characters to generate per sample, at most (the prompt not "
    "counted). Default: 500; 1500 per tune with --tunes.", rich_help_panel=PS,
    show_default=False)]
Temperature = Annotated[float, typer.Option(
    "--temperature", "-t", help="Divides the logits: below 1 is safer, above 1 wilder; "
    "0 = greedy (always the most likely character).", rich_help_panel=PS)]
TopK = Annotated[int, typer.Option(
    "--top-k", help="Sample only among the k most likely characters (0 = all).",
    rich_help_panel=PS)]
TopP = Annotated[float | None, typer.Option(
    "--top-p", help="Sample only among the most likely characters whose probabilities "
    "add up to p, in (0, 1] (1 = all). Default for models trained on ABC: 0.95 under the ABC "
    "constraint (from the tune's body on), 0.9 without it (an unlikely character can garble a "
    "tune); 1 otherwise.", rich_help_panel=PS, show_default=False)]
Seed = Annotated[int | None, typer.Option(
    "--seed", "-s", help="Random seed: the same seed gives the same text on the same "
    "machine. Default: a random one, reported on stderr.", rich_help_panel=PS,
    show_default=False)]
NumSamples = Annotated[int, typer.Option(
    "--num-samples", help="Samples to generate, together as one batch.",
    rich_help_panel=PS)]
Stop = Annotated[list[str] | None, typer.Option(
    "--stop", help="End a sample just before this string (repeatable; \\n means "
    "newline). Samples also end at the end-of-document token.", rich_help_panel=PS,
    show_default=False)]
UnknownOption = Annotated[Unknown, typer.Option(
    "--unknown", help="Prompt characters the model does not know: strict "
    "(error listing them) or skip (drop them, with a warning).", rich_help_panel=PS)]
Tunes = Annotated[int | None, typer.Option(
    "--tunes", help="ABC models: sample until this many complete tunes (each ended by "
    "the end-of-document token or the next X:), numbered 1..N (on after the tunes already "
    "in --out).", rich_help_panel=PO,
    show_default=False)]
Out = Annotated[Path | None, typer.Option(
    "--out", "-o", help="With --tunes: write each tune to this directory as "
    "tune_NN.abc, and as tune_NN.mid when it converts (numbered on after tunes already "
    "there).", rich_help_panel=PO,
    show_default=False)]
Midi = Annotated[bool, typer.Option("--midi/--no-midi", help="With --out: also write MIDI files.",
                                    rich_help_panel=PO)]
Page = Annotated[bool, typer.Option(
    "--page/--no-page", help="With --out: also write DIR/index.html, one page of every "
    "tune in DIR (score, audio player, ABC, check verdict; audio as tune_NN.ogg when a "
    "synthesizer is installed).", rich_help_panel=PO)]
FormatOption = Annotated[Format, typer.Option(
    "--format", "-f", help="text: the samples (one sample streams as it is "
    "generated; several are separated by a line of 15 dashes); json: one JSON object per line and sample, with prompt, text, tokens, stop "
    "reason and timing in seconds.", rich_help_panel=PO)]
Threads = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads for torch (default: 1 below 8 streams, the fastest "
    "for a decode step's small operations; from 8 streams, the cores idle at the start, at "
    "most 4).",
    rich_help_panel=PO, show_default=False)]
Device = Annotated[str, typer.Option("--device",
                                     help="Where the model runs: cpu, cuda, cuda:N, mps or auto.",
                                     rich_help_panel=PO)]
Constrain = Annotated[str | None, typer.Option(
    "--constrain", help="abc: only characters that keep a well-formed ABC tune (header "
    "fields, bars as long as the meter, a final barline); none: off. Default: abc for models "
    "trained on ABC, none otherwise.", rich_help_panel=PS, show_default=False)]
Meter = Annotated[str | None, typer.Option(
    "--meter", help="ABC models: start the tune with this meter, e.g. 6/8 (writes the "
    "header for you, with L:1/8).", rich_help_panel=PS, show_default=False)]
Key = Annotated[str | None, typer.Option(
    "--key", help="ABC models: the tune's key, e.g. D, Em, Dmix (without --meter the "
    "model writes M: and L:, and the ABC constraint fixes K:).",
    rich_help_panel=PS, show_default=False)]
Form = Annotated[str | None, typer.Option(
    "--form", help="ABC models: the tune's parts, a letter each, doubled for a repeated part: "
    "AABB, AB, AABBCC, AABA. The ABC constraint makes each part exactly --bars bars (a pickup "
    "and endings allowed) and closes each repeat. corpus (the default where the checkpoint "
    "has it): each tune's form and part length drawn from the training tunes of its meter and "
    "rhythm; free: no form.", rich_help_panel=PS, show_default=False)]
Bars = Annotated[int | None, typer.Option(
    "--bars", help="With a --form of letters: bars in each part (1-64). Default: 8.",
    rich_help_panel=PS, show_default=False)]
Cadence = Annotated[str, typer.Option(
    "--cadence", help="With --form: tonic (the tune's last note is the tonic of K:, modes "
    "included: Ador ends on A) or free.", rich_help_panel=PS)]
RepeatBars = Annotated[bool, typer.Option(
    "--repeat-bars/--no-repeat-bars", help="ABC models with a --form (or one drawn from the "
    "training tunes): where one of the checkpoint's training tunes of the tune's form and part "
    "length repeats a bar, the tune repeats its own bar there (that tune's bar plan; the "
    "grammar checks every character); a letter that returns in --form (AABA) repeats its "
    "first part's bars. --no-repeat-bars: the model writes every bar.",
    rich_help_panel=PS)]
WholeHeader = Annotated[bool, typer.Option(
    "--whole-header/--no-whole-header", help="ABC tunes with the ABC constraint: the header "
    "(meter, key, title, ...; the grammar keeps its values valid) drawn from the model's whole "
    "distribution, --top-k/--top-p applied from the body on, so that meters and keys come as "
    "often as the model learned them. --no-whole-header: filtered as the body is.",
    rich_help_panel=PS)]
Title = Annotated[str | None, typer.Option(
    "--title", help="ABC models: the tune's title (T: field).", rich_help_panel=PS,
    show_default=False)]


def sample(
    checkpoint: Checkpoint = None,
    prompt: Prompt = "",
    prompt_file: PromptFile = None,
    length: Length = None,
    temperature: Temperature = 1.0,
    top_k: TopK = 0,
    top_p: TopP = None,
    seed: Seed = None,
    num_samples: NumSamples = 1,
    stop: Stop = None,
    unknown: UnknownOption = Unknown.strict,
    tunes: Tunes = None,
    out: Out = None,
    midi: Midi = True,
    page: Page = True,
    fmt: FormatOption = Format.text,
    threads: Threads = None,
    device: Device = "cpu",
    constrain: Constrain = None,
    meter: Meter = None,
    key: Key = None,
    title: Title = None,
    form: Form = None,
    bars: Bars = None,
    cadence: Cadence = "tonic",
    repeat_bars: RepeatBars = True,
    whole_header: WholeHeader = True,
) -> None:
    """Generate text (or ABC tunes with --tunes) from a trained checkpoint."""
    t_start = time.perf_counter()
    prompt = _read_prompt(prompt, prompt_file)
    _check_outputs(tunes, out, midi, page, num_samples, threads)
    from seqgen.music.tunes import SamplingRequest, resolve_sampling

    request = SamplingRequest(
        prompt=prompt, prompt_source=str(prompt_file) if prompt_file is not None else "--prompt",
        tunes=tunes is not None, meter=meter, key=key, title=title, length=length,
        temperature=temperature, top_k=top_k, top_p=top_p, num_samples=num_samples,
        stop=tuple(unescape(s) for s in (stop or ())), constrain=constrain,
        unknown=unknown.value, form=form, bars=bars, cadence=cadence, repeat_bars=repeat_bars,
        whole_header=whole_header)
    request.validate()  # before loading the model

    import torch

    from seqgen.checkpoint import load_checkpoint
    from seqgen.devices import resolve_device
    from seqgen.evaluate import resolve_checkpoint
    from seqgen.sampling import default_threads

    device = resolve_device(device)
    torch.set_num_threads(threads or default_threads(tunes or num_samples))
    path = resolve_checkpoint(checkpoint)  # named, else the newest run's best/, else shipped
    ckpt = load_checkpoint(path, device=device)
    info(f"{ckpt.path}: {ckpt.meta.get('summary', ckpt.model_config.kind)}, step {ckpt.step:,}")
    resolved = resolve_sampling(ckpt, request, notify=lambda level, message: (
        warn if level == "warning" else info)(message))
    config, prompt = resolved.config, resolved.prompt
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    info(f"seed {seed}" + (f", top-p {config.top_p:g}" if config.top_p < 1 else "")
         + (", ABC constraint on (--constrain none to switch it off)"
            if config.constrain == "abc" else "")
         + ("; each tune's form drawn from the training tunes (--form free: none)"
            if config.form == "corpus" else "")
         + (", bars repeated as one of them repeats its own (--no-repeat-bars: none)"
            if config.corpus_forms and config.repeat_bars and _has_plans(config.corpus_forms)
            else ""))
    generator = torch.Generator(device=device).manual_seed(seed)
    if tunes is not None:
        _tunes(ckpt, prompt, tunes, config, generator, out, midi, fmt, seed, page)
    else:
        _samples(ckpt, prompt, config, generator, fmt, seed, t_start)


def _read_prompt(prompt: str, prompt_file: Path | None) -> str:
    """The prompt of --prompt (its escapes read) or of --prompt-file (as it is)."""
    if prompt_file is None:
        return unescape(prompt)
    if prompt:
        from seqgen.errors import UsageError

        raise UsageError("give --prompt or --prompt-file, not both")
    from seqgen.data import read_text_file

    return read_text_file(prompt_file)


def _has_plans(forms: dict) -> bool:
    return any(g.get("plans") for g in forms.get("groups", []))


def _check_outputs(tunes: int | None, out: Path | None, midi: bool, page: bool,
                   num_samples: int, threads: int | None) -> None:
    """UsageError for output options that do not go together, before any work."""
    from seqgen.errors import UsageError

    if out is not None and tunes is None:
        raise UsageError("--out writes tunes: use it with --tunes N")
    if not midi and out is None:
        raise UsageError("--no-midi applies to the files --out writes: add --out DIR")
    if not page and out is None:
        raise UsageError("--no-page applies to the files --out writes: add --out DIR")
    if tunes is not None and num_samples != 1:
        raise UsageError("--tunes N samples its N tunes together already: drop --num-samples")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; give a directory for the tunes")
    if out is not None and not out.exists() and out.suffix.lower() in (".abc", ".mid", ".midi"):
        raise UsageError(f"--out {out}: tunes are written into a directory (tune_01.abc, "
                         f"tune_01.mid, ...); give a directory name such as {out.stem}/")
    from seqgen.devices import check_threads

    check_threads(threads)
    if tunes is not None and tunes < 1:
        raise UsageError(f"--tunes must be >= 1, not {tunes}")


def _samples(ckpt, prompt: str, config, generator, fmt: Format, seed: int,
             t_start: float) -> None:
    """Text samples: one streamed to stdout as it comes, or several (or JSON) at the end."""
    from seqgen.sampling import Sampler

    stream = config.num_samples == 1 and fmt is Format.text
    first: list[float] = []
    # (checks the prompt first) read as the model read text in training: a document's start, or
    # a paragraph of the one text it learned (seqgen.checkpoint.prompt_context)
    sampler = Sampler(ckpt.model, ckpt.tokenizer, prompt, config, generator, ckpt.context)
    if stream:
        sys.stdout.write(prompt)
        sys.stdout.flush()
    for _, piece in sampler:
        if not first:
            first.append(time.perf_counter() - t_start)
        if stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    samples = sampler.samples
    if stream:
        sys.stdout.write("\n")
        sys.stdout.flush()
    for s in samples:
        if fmt is Format.json:
            d = s.to_dict()
            d.update(seed=seed, checkpoint=str(ckpt.path))
            result(json.dumps(d, ensure_ascii=False))
        elif not stream:
            if s.index:  # between samples, in the output itself (as nanoGPT's sample.py)
                result(SEPARATOR)
            result(s.prompt + s.text)
    chars = sum(len(s.tokens) for s in samples)
    secs = max((s.seconds for s in samples), default=0.0)
    rate = f" ({chars / secs:,.0f} characters/s)" if secs > 0 else ""
    lead = f"; first after {first[0]:.2f} s from start" if first else ""
    ends = ", ".join(sorted({_why(s) for s in samples}))
    info(f"{chars:,} characters in {secs:.2f} s{rate}{lead}; ended by {ends}")
    short = [s.index + 1 for s in samples if s.stop_reason == "length"]
    from seqgen.music.grammar.vocabulary import FORM_CORPUS

    if config.form not in (None, FORM_CORPUS) and short:
        from seqgen.errors import UsageError

        raise UsageError(f"--form {config.form}: sample(s) {', '.join(map(str, short))} reached "
                         f"--length {config.length} before the form of {config.bars}-bar parts "
                         "was complete (written above); raise --length")


def _why(s) -> str:
    if s.stop_reason == "stop":
        return f"stop string {s.stop_string!r}"
    return {"eos": "end of document", "length": "--length"}[s.stop_reason]


def _tunes(ckpt, prompt, count, config, generator, out, midi, fmt, seed, page=False) -> None:
    if out is None:
        return _write_tunes(ckpt, prompt, count, config, generator, None, fmt, seed)
    from seqgen.music.tunes import TuneFiles, tune_directory

    with tune_directory(out):
        files = TuneFiles(out, count, midi)
        if files.first > 1:
            info(f"{out} holds tunes up to number {files.first - 1}; these are numbered from "
                 f"{files.first}")
        _write_tunes(ckpt, prompt, count, config, generator, files, fmt, seed)
        if page:
            from seqgen.cli.scores import write_index

            index = write_index(out)
            if index is not None:
                info(f"open {index} in a browser to see and hear the tunes")


def _write_tunes(ckpt, prompt, count, config, generator, files, fmt, seed) -> None:
    from seqgen.music.tunes import sample_tunes

    def on_tune(tune) -> None:
        written: list[str] = []
        if files is not None:
            written, no_midi = files.write(tune)
            if no_midi is not None:
                warn(f"tune {tune.number}: no MIDI ({no_midi}); wrote the .abc only")
        if fmt is Format.json:
            d = tune.sample.to_dict()
            d.update(number=tune.number, text=tune.text, end=tune.end, files=written, seed=seed,
                     checkpoint=str(ckpt.path))
            result(json.dumps(d, ensure_ascii=False))
        elif files is not None:
            for f in written:
                result(f)
        else:
            result(tune.text + "\n")  # tunes separated by blank lines: a valid ABC file

    t0 = time.perf_counter()
    with console.status(f"sampling {count} tune(s)..."):
        sample_tunes(ckpt.model, ckpt.tokenizer, count, prompt, config, generator,
                     on_tune=on_tune, first=files.first if files is not None else 1,
                     context=ckpt.context)
    info(f"{count} tune(s) in {time.perf_counter() - t0:.2f} s")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
