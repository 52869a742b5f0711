"""Evaluating a checkpoint (`seqgen eval`): held-out loss, and for ABC models the quality of tunes.

    from seqgen.checkpoint import load_checkpoint
    from seqgen.evaluate import EvalConfig, evaluate
    report = evaluate(load_checkpoint("checkpoints/folk"), EvalConfig(tunes=100))
    report.to_dict()

What is measured:

- ``val_loss`` (nats per character) and ``val_bpc`` (bits per character) on the held-out
  documents: the same split the checkpoint trained with (corpus, ``--val-fraction`` and
  ``--seed`` read from its train config), scored as training scores it (RNN kinds: the split read
  as parallel rows with the state carried; the transformer: non-overlapping windows).
- For ABC models, `tunes` tunes sampled with a fixed seed, once with the ABC constraint
  (``--constrain abc``) and once without (``--constrain none``), from the same seed; each goes
  through the music check (seqgen.music.convert.check_tune: A converts, B headers, C metrical
  share, D final barline, VALID) and is compared with the training tunes: rates, meters, keys
  and lengths against the training split, and novelty (``copies``: the share of tunes that copy
  a run of 40 characters of training music). seqgen/music/quality.py measures them.
- The form of those tunes and of the training tunes side by side (seqgen.music.form: AABB, parts
  of 8 bars, fragments, bars that recur, the opening's return, the last note on the tonic,
  accidentals; docs/quality.md "Form").
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.checkpoint import default_model_dir, share_of
from seqgen.config import check_fields, like, plain_values, setting
from seqgen.errors import DataError, UsageError
from seqgen.music.quality import TuneStats
from seqgen.music.tunes import TUNE_LENGTH, SamplingRequest
from seqgen.sampling import SampleConfig

if TYPE_CHECKING:
    from seqgen.checkpoint import Checkpoint
    from seqgen.data import Corpus

MODES = ("abc", "none")


@dataclass
class EvalConfig:
    """What `seqgen eval` measures; each field is the option of the same name."""

    corpus: str | None = None  # default: the corpus the checkpoint trained on
    tunes: int = setting(100, ge=0)  # tunes sampled per mode (0: loss only)
    seed: int = 1234
    temperature: float = setting(1.0, gt=0, finite=True)
    # None: as seqgen sample (music.tunes.resolve_sampling)
    top_p: float | None = setting(None, gt=0, le=1)
    # characters per tune, at most (as seqgen sample --tunes)
    length: int = setting(TUNE_LENGTH, ge=10, unit="characters")
    constrain: str = setting("both", choices=("both", *MODES), text="both, abc or none")
    eval_tokens: int = setting(0, ge=0, note="0: all")  # held-out tokens scored, at most
    jobs: int = setting(2, ge=1)  # music-check workers
    # the form of the sampled tunes, as seqgen sample's --form, --bars, --cadence (the ABC
    # constraint's column only: without it nothing follows a form)
    form: str | None = like(SamplingRequest, "form", None)
    bars: int | None = like(SamplingRequest, "bars", None)
    cadence: str = like(SampleConfig, "cadence", "tonic")
    repeat_bars: bool = like(SampleConfig, "repeat_bars", True)
    whole_header: bool = like(SampleConfig, "whole_header", True)

    def __post_init__(self) -> None:
        plain_values(self)

    def validate(self) -> None:
        """UsageError naming the first bad field."""
        check_fields(self)


@dataclass
class EvalReport:
    checkpoint: str
    corpus: str
    corpus_kind: str
    val_documents: int
    val_tokens: int
    val_loss: float | None
    val_bpc: float | None
    config: dict
    modes: list[TuneStats] = field(default_factory=list)
    corpus_stats: TuneStats | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


# ------------------------------------------------------------------------------ checkpoints
def resolve_checkpoint(path: str | os.PathLike | None, root: str = "checkpoints") -> Path:
    """`path`, else the newest run under `root` (its best/ checkpoint when it has one: the lowest
    validation loss, not the last weights, which may have overfitted), else the shipped default
    model; UsageError when there is none of them. The name `default` (when no such directory
    exists here) is the shipped model, so that it stays reachable after training runs."""
    from seqgen.checkpoint import BEST, META, find_latest_checkpoint

    if path is not None:
        if str(path) == "default" and not Path(path).exists():
            shipped = default_model_dir()
            if shipped is not None:
                return shipped
        return Path(path)
    found = find_latest_checkpoint(root)
    if found is not None and (found / BEST / META).is_file():
        found = found / BEST
    if found is None:
        found = default_model_dir()
    if found is None:
        raise UsageError(f"no checkpoint given and none found under {root}/; train one first "
                         "with `seqgen train` (or pass a checkpoint directory)")
    return found


# ----------------------------------------------------------------------------- held-out loss
def validation_loss(ckpt: Checkpoint, val_ids, max_tokens: int = 0) -> tuple[float, int]:
    """Mean cross-entropy (nats per character) of `ckpt.model` on `val_ids`, and the tokens scored:
    scored as training scores it (`seqgen.train.held_out_loss`, with the run's window and batch)."""
    import numpy as np

    from seqgen.train import held_out_loss

    tc = ckpt.train_config
    ids = np.asarray(val_ids)
    if max_tokens:
        ids = ids[: max_tokens + 1]
    if len(ids) - 1 < 2:
        raise UsageError("the held-out split is empty: nothing to score (was the checkpoint "
                         "trained with `val_fraction` 0?)", params=True)
    T = int(tc.get("seq_len") or 64)
    recurrent = ckpt.model_config.kind != "transformer"
    if not recurrent:
        T = min(T, ckpt.model_config.context_length)
    device = next(ckpt.model.parameters()).device  # (a checkpoint loaded onto a GPU)
    return held_out_loss(ckpt.model, ids, recurrent, T, int(tc.get("batch_size") or 64),
                         device=str(device))


# --------------------------------------------------------------------------------------- main
def checkpoint_corpus(ckpt: Checkpoint, spec: str | None = None) -> Corpus:
    """The corpus `spec` (default: the one the checkpoint trained on, with its --glob and
    --split-docs), ABC read in the form the model trained on (its --abc-headers and
    --abc-normalise)."""
    from seqgen.data import ABC_HEADERS, load_corpus

    tc = ckpt.train_config
    headers = tc.get("abc_headers", "all")  # the form of ABC the model trained on
    if headers not in ABC_HEADERS:
        headers = "all"
    normalise = tc.get("abc_normalise") is True  # runs saved before the option: as written
    if spec is None:
        try:
            return load_corpus(tc.get("corpus") or ckpt.corpus_name, tc.get("glob"),
                               bool(tc.get("split_docs")), abc_headers=headers,
                               abc_normalise=normalise)
        except DataError as e:
            raise DataError(f"{e}; if the checkpoint's corpus has moved, give it with "
                            "--corpus") from None
    return load_corpus(spec, abc_headers=headers, abc_normalise=normalise)


def evaluate(ckpt: Checkpoint, config: EvalConfig | None = None,
             progress: Any = None, notify: Any = None) -> EvalReport:
    """Evaluate a loaded checkpoint (see the module docstring). `progress(message)` is called
    before each stage (for a status line), `notify(message)` with what the user should know
    (a bundled corpus read where a folder of its name is here too)."""
    from seqgen.data import prepare_data
    from seqgen.music.form import form_stats
    from seqgen.music.quality import NoveltyIndex, check_tunes, describe_tunes
    from seqgen.music.tunes import (
        SamplingRequest,
        default_top_p,
        resolve_sampling,
        sample_eval_tunes,
    )

    config = config or EvalConfig()
    config.validate()
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    tc = ckpt.train_config
    corpus = checkpoint_corpus(ckpt, config.corpus)
    missing = ckpt.tokenizer.unknown_chars("".join(corpus.documents))
    if missing:
        from seqgen.tokenizer import _show

        what = f"{len(missing)} character(s) the model does not know: {_show(missing)}"
        if config.corpus is not None:
            raise UsageError(f"`corpus` {corpus.name}: {what}; evaluate on the corpus it "
                             "trained on", config=EvalConfig)
        raise DataError(f"{corpus.name}: {what}; the checkpoint's corpus has changed since it "
                        "was trained, so give the text it trained on with --corpus")
    if corpus.note and notify is not None:
        notify(corpus.note)
    data = prepare_data(corpus, ckpt.tokenizer, float(tc.get("val_fraction", 0.1)),
                        int(tc.get("seed", 1337)), share_of=share_of(ckpt.meta))
    say("scoring the held-out documents")
    loss, scored = validation_loss(ckpt, data.val_ids, config.eval_tokens)
    report = EvalReport(
        checkpoint=str(ckpt.path), corpus=corpus.name, corpus_kind=corpus.kind,
        val_documents=len(data.split.val), val_tokens=scored, val_loss=loss,
        val_bpc=loss / math.log(2), config=asdict(config))
    tunes_too = ckpt.corpus_kind == "abc" and corpus.kind == "abc" and config.tunes > 0
    # sampled as `seqgen sample --tunes` samples (each mode sets its own constraint)
    sampling = resolve_sampling(ckpt, SamplingRequest(
        tunes=tunes_too, length=config.length, temperature=config.temperature,
        top_p=config.top_p, form=config.form, bars=config.bars, cadence=config.cadence,
        repeat_bars=config.repeat_bars, whole_header=config.whole_header))
    # (None where each mode took its own default; each mode's "top_p" says which)
    report.config["top_p"] = config.top_p
    if tunes_too:
        train_tunes = data.split.train
        reference = describe_tunes(train_tunes, "corpus")
        say("reading the form of the training tunes")
        reference.form = form_stats(train_tunes)
        report.corpus_stats = reference
        say("indexing the training tunes for novelty")
        novelty = NoveltyIndex(train_tunes)
        modes = MODES if config.constrain == "both" else (config.constrain,)
        for mode in modes:
            say(f"sampling {config.tunes} tunes (--constrain {mode})")
            ts = time.perf_counter()
            # (each mode at its own default top-p unless one was given: default_top_p)
            top_p = config.top_p if config.top_p is not None else default_top_p(
                ckpt.corpus_kind, mode)
            tunes, finished = sample_eval_tunes(
                ckpt, config.tunes, config.seed,
                replace(sampling.config, constrain=mode, top_p=top_p,
                        form=sampling.config.form if mode == "abc" else None), sampling.prompt)
            sample_s = time.perf_counter() - ts
            say(f"checking {len(tunes)} tunes (--constrain {mode})")
            st = check_tunes(tunes, mode, reference, novelty, config.jobs)
            st.sample_seconds, st.top_p = sample_s, top_p
            st.finished = finished / max(len(tunes), 1)
            st.form = form_stats(tunes)
            st.examples = tunes[:3]
            report.modes.append(st)
    report.seconds = time.perf_counter() - t0
    return report
