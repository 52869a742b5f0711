"""Tunes: how a checkpoint samples them, the prompts they start from, sampling whole tunes,
numbering them, writing them.

    from seqgen.music.tunes import SamplingRequest, resolve_sampling, sample_tunes
    plan = resolve_sampling(ckpt, SamplingRequest(tunes=True, meter="6/8", key="D"))
    tunes = sample_tunes(ckpt.model, ckpt.tokenizer, 3, plan.prompt, plan.config)
    tunes[0].text      # 'X:1\\nM:6/8\\nL:1/8\\nK:D\\n...', numbered 1..3

`resolve_sampling` is where `seqgen sample` and `seqgen eval` get their defaults for a
checkpoint: for a model trained on ABC the ABC constraint, top-p GRAMMAR_TOP_P, TUNE_LENGTH
characters per tune and the header written from --meter/--key/--title.

No torch and no music21 at import (both are imported by the functions that need them).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from seqgen.config import check_fields, like, setting
from seqgen.errors import DataError, UsageError
from seqgen.music.abc import parse_meter
from seqgen.music.grammar.vocabulary import FORM_CORPUS, FORM_FREE, form_option_problem
from seqgen.music.keys import read_key
from seqgen.sampling import Sample, SampleConfig, generate

if TYPE_CHECKING:
    import torch

    from seqgen.checkpoint import Checkpoint
    from seqgen.tokenizer import Tokenizer

TUNE_BREAK = "\nX:"  # the next tune's header: the current tune is over
TUNE_LENGTH = 1500  # characters per tune, at most, unless told (seqgen sample --tunes, eval)

# `seqgen sample` and `seqgen eval` sample a model trained on ABC with top-p TUNE_TOP_P unless told
# otherwise: a tune is garbled by one unlikely character (a 7 in `M:9/8`, a bar that runs over),
# and nucleus sampling leaves out the tail of the distribution those come from (docs/quality.md
# has the measurements). Under the ABC grammar (`--constrain abc`) nothing garbled can be
# written, so the cut is lighter, GRAMMAR_TOP_P: at 0.9 the tunes held half as many accidentals
# as their training tunes (10% of tunes against 29%), at 0.95 about as many (25%; at 1: 48%).
# Text models, and the library's SampleConfig, sample from all (top-p 1).
TUNE_TOP_P = 0.9
GRAMMAR_TOP_P = 0.95


def default_top_p(corpus_kind: str, constrain: str = "none") -> float:
    """The top-p the CLI samples a model with when --top-p is not given: for a model trained on
    ABC (`corpus_kind` "abc") GRAMMAR_TOP_P under the ABC constraint (`constrain` "abc"), else
    TUNE_TOP_P; 1 (off) for other models."""
    if corpus_kind != "abc":
        return 1.0
    return GRAMMAR_TOP_P if constrain == "abc" else TUNE_TOP_P


# ------------------------------------------------------------------------------------ prompts
def header_prompt(meter: str | None = None, key: str | None = None, title: str | None = None,
                  unit: str = "1/8") -> str:
    """The start of a tune for ``seqgen sample --meter 6/8 --key Dmix --title "..."``:
    ``X:1``, ``T:`` title, ``M:`` meter with ``L:`` unit, ``K:`` key (each when given; the model
    writes the rest of the header). A key without a meter is not written here: K: ends the
    header, and the model has to write M: and L: first; the ABC constraint then fixes the key
    (``abc_constraint(..., key=...)``). UsageError naming the option for a bad value."""
    lines = ["X:1"]
    if title is not None:
        title = " ".join(title.split())
        if not title:
            raise UsageError("`title` must not be empty", params=True)
        lines.append(f"T:{title}")
    if meter is not None:
        meter = meter.strip()
        if parse_meter(meter) is None:
            raise UsageError(f"`meter` must be a meter such as 6/8, 3/4, 2/4, C or C|, "
                             f"not {meter!r}", params=True)
        lines += [f"M:{meter}", f"L:{unit}"]
    if key is not None:
        key = key.strip()
        if read_key(key, strict=True) is None:
            raise UsageError(f"`key` must be a key such as D, Em, Ador or Dmix, not {key!r}",
                             params=True)
        if meter is not None:
            lines.append(f"K:{key}")
    return "\n".join(lines) + "\n"


def tune_prompt(tokenizer: Tokenizer, prompt: str) -> str:
    """The prompt `sample_tunes` starts every tune from: "X:" for an empty one; a header with a
    K: line and no L: gets ABC's default unit length written out before K: (as every training
    tune has it, and as the music check wants it; `music.abc.with_unit`), when the vocabulary
    can spell it."""
    if not prompt:
        return "X:"
    from seqgen.music.abc import with_unit

    full = with_unit(prompt)
    if set(tokenizer.unknown_chars(full)) - set(tokenizer.unknown_chars(prompt)):
        return prompt
    return full


# ----------------------------------------------------------------------------------- sampling
@dataclass
class Tune:
    """One complete sampled tune: ABC text numbered X:number, ending in a newline."""

    number: int
    text: str
    end: str  # "eos" (end-of-document token) | "X:" (the next tune began) | "stop" (a --stop)
    sample: Sample = field(repr=False)


def number_tune(text: str, number: int) -> str:
    """`text` with its first ``X:`` line replaced by ``X:number`` (added when missing)."""
    lines = text.split("\n")
    if lines and lines[0].startswith("X:"):
        lines[0] = f"X:{number}"
    else:
        lines.insert(0, f"X:{number}")
    return "\n".join(lines)


def sample_tunes(model, tokenizer: Tokenizer, count: int, prompt: str = "X:",
                 config: SampleConfig | None = None, generator: torch.Generator | None = None,
                 max_rounds: int = 10,
                 on_tune: Callable[[Tune], None] | None = None, first: int = 1,
                 context: str | None = None) -> list[Tune]:
    """Exactly `count` complete tunes, numbered first..first + count - 1 (X: and Tune.number).

    Each round samples the missing tunes together as one batch (config.num_samples is ignored);
    a stream ends at <eos> or where it starts the next tune ("\\nX:"). A tune counts when it ended
    that way and has X: and K: headers; streams that ran out of --length are dropped and sampled
    again. DataError after `max_rounds` rounds without enough tunes (the model does not end
    tunes, or --length is too short). The prompt is completed by `tune_prompt`. The ABC
    constraint is on only when `config` asks for it (`SampleConfig(constrain="abc")`; the
    command line switches it on by default for ABC models). `context`: the checkpoint's (None:
    <eos>; a model trained on a single tune never saw <eos>: seqgen.sampling.encode_prompt).
    """
    from seqgen.music.abc import looks_like_abc

    if count < 1:
        raise UsageError(f"count must be >= 1 (tunes to sample), not {count}")
    prompt = tune_prompt(tokenizer, prompt)
    base = config or SampleConfig(length=TUNE_LENGTH)
    not_abc = 0
    stops = tuple(dict.fromkeys((TUNE_BREAK, *base.stop)))
    tunes: list[Tune] = []
    for _ in range(max_rounds):
        need = count - len(tunes)
        cfg = SampleConfig(**{**asdict(base), "num_samples": need, "stop": stops,
                              "stop_at_eos": True})
        for s in generate(model, tokenizer, prompt, cfg, generator, context=context):
            if s.stop_reason == "length":
                continue
            text = (prompt + s.text).strip()
            if not looks_like_abc(text):
                not_abc += 1
                continue
            end = "X:" if s.stop_string == TUNE_BREAK else s.stop_reason
            number = first + len(tunes)
            tune = Tune(number, number_tune(text, number) + "\n", end, s)
            tunes.append(tune)
            if on_tune is not None:
                on_tune(tune)
        if len(tunes) == count:
            return tunes
    if base.form is not None:
        what = (f"the form {base.form} of {base.bars}-bar parts" if base.form != FORM_CORPUS
                else "the forms drawn for them")
        raise DataError(
            f"only {len(tunes)} of {count} tunes completed {what} within `length` "
            f"{base.length} characters after {max_rounds} rounds (the tunes written are kept); "
            "raise `length`, or ask for fewer or shorter parts",
            params=True)
    if not tunes and not_abc:
        raise DataError(f"{not_abc} samples ended, none of them an ABC tune (X: and K: headers): "
                        "give an ABC header as the prompt, such as 'X:1\\nM:6/8\\nK:D\\n', and "
                        "a model trained on ABC")
    raise DataError(
        f"only {len(tunes)} of {count} tunes ended (with <eos> or a next X:) within `length` "
        f"{base.length} characters after {max_rounds} rounds; raise `length`, or train longer",
        params=True)


def sample_eval_tunes(ckpt: Checkpoint, count: int, seed: int, config: SampleConfig,
                      prompt: str = "X:") -> tuple[list[str], int]:
    """`count` tunes sampled together (one batch, `config` but its num_samples) from `prompt`
    with generator seed `seed`, each ended by <eos> or the next 'X:' (as ``seqgen sample
    --tunes`` ends them) and numbered 1..count in their ``X:`` line as ``seqgen sample --tunes``
    numbers them (the model's own reference number is not music, and users never see it).
    Returns the tunes and how many ended within the length; a tune that ran out of length is
    kept as it is (and usually fails the check): unlike `sample_tunes`, this does not sample
    again in place of failures (``seqgen eval`` measures them)."""
    import dataclasses

    import torch

    stops = tuple(dict.fromkeys((TUNE_BREAK, *config.stop)))
    cfg = dataclasses.replace(config, num_samples=count, stop=stops, stop_at_eos=True)
    gen = torch.Generator().manual_seed(seed)
    samples = generate(ckpt.model, ckpt.tokenizer, prompt, cfg, gen, context=ckpt.context)
    tunes = [number_tune((prompt + s.text).strip(), i + 1) + "\n" for i, s in enumerate(samples)]
    return tunes, sum(s.stop_reason != "length" for s in samples)


# ------------------------------------------------------------------------------------ writing
_TUNE_FILE = re.compile(r"tune_(\d+)\.(abc|mid)")


class TuneFiles:
    """Writes tunes into directory `out` as tune_NN.abc, and with `midi` as tune_NN.mid when
    they convert. `first` is the number after the highest tune already there (1 in a new or
    empty directory): tunes are added, never replaced. Hold `tune_directory(out)` while
    writing."""

    def __init__(self, out: str | Path, count: int, midi: bool = True):
        self.out, self.midi = Path(out), midi
        taken = [int(m.group(1)) for p in self.out.iterdir()
                 if (m := _TUNE_FILE.fullmatch(p.name))] if self.out.is_dir() else []
        self.first = max(taken) + 1 if taken else 1
        self.width = max(2, len(str(self.first + count - 1)))  # tune_01 ... tune_99, tune_100

    def write(self, tune: Tune) -> tuple[list[str], str | None]:
        """Write tune `tune.number`: the paths written, and why it has no MIDI file (None when
        it has one, or when MIDI was not asked for)."""
        from seqgen.fileio import atomic_write_text

        stem = self.out / f"tune_{tune.number:0{self.width}d}"
        atomic_write_text(stem.with_suffix(".abc"), tune.text)
        files = [str(stem.with_suffix(".abc"))]
        if self.midi:
            from seqgen.music.convert import abc_to_midi

            try:
                abc_to_midi(tune.text, stem.with_suffix(".mid"))
            except DataError as e:
                return files, str(e)
            files.append(str(stem.with_suffix(".mid")))
        return files, None


@contextlib.contextmanager
def tune_directory(out: str | Path, option: str = "--out") -> Iterator[Path]:
    """Hold the lock of directory `out` (made when missing) while tunes are written there: one
    writer at a time, since two runs into one directory would pick the same tune numbers. A
    directory made here for tunes that never came is not left behind empty."""
    from seqgen.fileio import directory_lock

    out = Path(out)
    created = not out.exists()
    try:
        with directory_lock(out, option):
            yield out
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


# ------------------------------------------------------------------- settings of a checkpoint
@dataclass
class SamplingRequest:
    """What the user asked for, as `seqgen sample` and `seqgen eval` take it. None (and an empty
    prompt) leave the choice to `resolve_sampling`, which knows the checkpoint."""

    prompt: str = ""
    prompt_source: str = "--prompt"  # what messages about the prompt call it (a file's name)
    tunes: bool = False  # whole tunes (seqgen sample --tunes, seqgen eval); ABC models only
    meter: str | None = None  # --meter, --key, --title: a tune header written for the model
    key: str | None = None  # (without --meter: the key the ABC constraint fixes)
    title: str | None = None
    # None: TUNE_LENGTH per tune, else SampleConfig's 500
    length: int | None = like(SampleConfig, "length", None)
    temperature: float = like(SampleConfig, "temperature", 1.0)
    top_k: int = like(SampleConfig, "top_k", 0)
    # None: for models trained on ABC GRAMMAR_TOP_P under the ABC constraint, else TUNE_TOP_P;
    # 1 for text models
    top_p: float | None = like(SampleConfig, "top_p", None)
    num_samples: int = like(SampleConfig, "num_samples", 1)
    stop: tuple[str, ...] = like(SampleConfig, "stop", ())
    # None: "abc" for ABC models whose vocabulary can spell ABC
    constrain: str | None = like(SampleConfig, "constrain", None)
    # prompt characters the model does not know: error, or "skip"
    unknown: str = like(SampleConfig, "unknown", "strict")
    # --form: letters (AABB), "corpus" (each tune's drawn from the checkpoint's training tunes)
    # or "free" (the grammar's own limits); None: corpus when the checkpoint has its forms
    form: str | None = setting(None, check=form_option_problem, link=": ")
    bars: int | None = like(SampleConfig, "bars", None)  # with a form of letters (None: 8)
    cadence: str = like(SampleConfig, "cadence", "tonic")
    repeat_bars: bool = like(SampleConfig, "repeat_bars", True)
    whole_header: bool = like(SampleConfig, "whole_header", True)

    def validate(self) -> None:
        """UsageError naming the first bad field: all that can be checked before a checkpoint
        is loaded."""
        check_fields(self)
        if self.bars is not None and self.form in (None, FORM_CORPUS, FORM_FREE):
            raise UsageError("`bars` needs a `form` of letters such as AABB (a form drawn from "
                             "the training tunes has their part lengths)", config=SamplingRequest)
        self.written_prompt()

    def has_header(self) -> bool:
        return self.meter is not None or self.key is not None or self.title is not None

    def written_prompt(self) -> str:
        """The prompt as given: `header_prompt` of --meter/--key/--title when any is given
        (UsageError when a prompt is given too), else `prompt`."""
        if not self.has_header():
            return self.prompt
        if self.prompt:
            raise UsageError("give `prompt` (or --prompt-file) or `meter`/`key`/`title`, not both",
                             config=SamplingRequest)
        return header_prompt(meter=self.meter, key=self.key, title=self.title)


@dataclass
class ResolvedSampling:
    """How to sample a checkpoint: the settings, and the prompt as the sampler takes it."""

    config: SampleConfig
    prompt: str


Notify = Callable[[str, str], None]  # (level "info" | "warning", message)


def resolve_sampling(ckpt: Checkpoint, request: SamplingRequest,
                     notify: Notify | None = None) -> ResolvedSampling:
    """The settings and prompt `request` means for checkpoint `ckpt`: the one place that
    decides the defaults of `seqgen sample` and `seqgen eval`.

    For a model trained on ABC: the ABC constraint (unless its vocabulary cannot spell ABC:
    then none, with a warning), top-p `default_top_p`, and with `tunes` TUNE_LENGTH characters per
    tune and the prompt completed by `tune_prompt` (a missing L: written out, with a note).
    Text models: no constraint, top-p 1, 500 characters. Prompt characters the model does not
    know are a VocabularyError, or dropped with a warning (`unknown` "skip"). `notify(level,
    message)` hears the notes and warnings as they come (the library never prints); UsageError
    for a bad request, or `tunes` with a text model."""
    say = notify or (lambda level, message: None)
    request.validate()
    tok, abc = ckpt.tokenizer, ckpt.corpus_kind == "abc"
    prompt = request.written_prompt()
    if request.form is not None and not abc:
        raise UsageError(f"`form` needs a model trained on ABC tunes; {ckpt.path} was trained "
                         f"on text ({ckpt.corpus_name})", config=SamplingRequest)
    if request.tunes:
        if not abc:
            raise UsageError(f"`tunes` needs a model trained on ABC tunes; {ckpt.path} was "
                             f"trained on text ({ckpt.corpus_name})", config=SamplingRequest)
        full = tune_prompt(tok, prompt)
        if prompt and full != prompt:
            unit = next(ln for ln in full.split("\n") if ln.startswith("L:"))
            say("info", f"the prompt's header has no L:; added {unit} (ABC's default for its "
                        "meter)")
        prompt = full
    prompt = _known_characters(tok, prompt, request, say)
    constrain = request.constrain
    if constrain is None:
        constrain = _default_constraint(tok, abc, say)
    length = request.length
    if length is None:
        length = TUNE_LENGTH if request.tunes else SampleConfig.length
    form, forms = _form(ckpt, request, constrain)
    config = SampleConfig(
        length=length, temperature=request.temperature, top_k=request.top_k,
        top_p=request.top_p if request.top_p is not None
        else default_top_p(ckpt.corpus_kind, constrain),
        num_samples=request.num_samples, stop=request.stop, unknown="strict",
        constrain=constrain,
        key=request.key if request.meter is None else None,  # with a meter, K: is in the prompt
        form=form, bars=request.bars or SampleConfig.bars, cadence=request.cadence,
        corpus_forms=forms, repeat_bars=request.repeat_bars, whole_header=request.whole_header,
    )
    config.validate()
    return ResolvedSampling(config, prompt)


def _form(ckpt: Checkpoint, request: SamplingRequest,
          constrain: str) -> tuple[str | None, dict | None]:
    """SampleConfig's `form` and `corpus_forms` for `request`: by default, each tune's form drawn
    from the checkpoint's training tunes when it has their forms and the ABC constraint is on
    (else none); "free": none; UsageError for "corpus" on a checkpoint without them. With a
    form of letters, the forms too (their bar plans) where `repeat_bars` asks for them."""
    from seqgen.music.form import FORMS_VERSION

    forms = ckpt.forms if ckpt.forms is not None and ckpt.forms.get("version") == FORMS_VERSION \
        else None
    if request.form is None:
        return (FORM_CORPUS, forms) if forms is not None and constrain == "abc" else (None, None)
    if request.form == FORM_FREE:
        return None, None
    if request.form == FORM_CORPUS:
        if forms is None:
            raise UsageError(f"`form` corpus: {ckpt.path} has no form distribution of its "
                             "training tunes (trained before seqgen kept one); give a form such "
                             "as AABB, or train the model again", config=SamplingRequest)
        return FORM_CORPUS, forms
    return request.form, (forms if request.repeat_bars and constrain == "abc" else None)


def _known_characters(tok: Tokenizer, prompt: str, request: SamplingRequest,
                      say: Notify) -> str:
    """`prompt`, or VocabularyError naming the characters the model does not know (without them
    and a warning with `unknown` "skip")."""
    missing = tok.unknown_chars(prompt)
    if not missing:
        return prompt
    from seqgen.errors import VocabularyError
    from seqgen.tokenizer import _show

    source = "--meter/--key/--title" if request.has_header() else request.prompt_source
    what = f"{source}: {len(missing)} character(s) the model does not know: {_show(missing)}"
    if request.unknown == "strict":
        raise VocabularyError(f"{what}; remove them or pass --unknown skip")
    say("warning", f"{what}; skipped")
    return "".join(c for c in prompt if c not in set(missing))


def _default_constraint(tok: Tokenizer, abc: bool, say: Notify) -> str:
    """"abc" for a model trained on ABC whose vocabulary can spell ABC, else "none"."""
    if not abc:
        return "none"
    from seqgen.music.grammar import ConstraintError, abc_constraint

    try:
        abc_constraint(tok)
    except ConstraintError as e:
        say("warning", f"{e}; sampling without it")
        return "none"
    return "abc"
