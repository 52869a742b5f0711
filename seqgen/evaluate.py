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
  share, D final barline, VALID) and is compared with the training tunes:
  - rates: converts, headers, mean metrical share, ends with a barline, VALID;
  - meters, keys (normalised: 'D Mixolydian' = 'Dmix') and lengths in bars, against the training
    split, with the total variation distance between the two meter and key distributions
    (0 = the same, 1 = nothing in common);
  - novelty: a tune *copies* the training data when its body (the music after ``K:``, white
    space removed) shares a run of NOVELTY_CHARS = 40 consecutive characters with the body of a
    training tune (found with a set of the training bodies' hashed 40-grams). ``copies`` is the
    share of tunes that do.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.errors import DataError, UsageError

if TYPE_CHECKING:
    from seqgen.checkpoint import Checkpoint
    from seqgen.data import Corpus

NOVELTY_CHARS = 40
MODES = ("abc", "none")


@dataclass
class EvalConfig:
    """What `seqgen eval` measures; each field is the option of the same name."""

    corpus: str | None = None  # default: the corpus the checkpoint trained on
    tunes: int = 100  # tunes sampled per mode (0: loss only)
    seed: int = 1234
    temperature: float = 1.0
    top_p: float | None = None  # None: the CLI's default for the model (music.tunes.default_top_p)
    length: int = 1500  # characters per tune, at most
    constrain: str = "both"  # "both" | "abc" | "none"
    eval_tokens: int = 0  # held-out tokens scored, at most (0: all)
    jobs: int = 2  # music-check workers

    def __post_init__(self) -> None:
        from seqgen.models.config import plain_values

        plain_values(self)

    def validate(self) -> None:
        """UsageError naming the `seqgen eval` option of the first bad field."""
        from seqgen.models.config import check_types

        check_types(self)
        if self.tunes < 0:
            raise UsageError(f"--tunes must be >= 0, not {self.tunes}")
        if self.constrain not in ("both", *MODES):
            raise UsageError(f"--constrain must be both, abc or none, not {self.constrain!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UsageError(f"--temperature must be > 0, not {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1], not {self.top_p}")
        if self.length < 10:
            raise UsageError(f"--length must be >= 10 characters, not {self.length}")
        if self.eval_tokens < 0:
            raise UsageError(f"--eval-tokens must be >= 0 (0: all), not {self.eval_tokens}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, not {self.jobs}")


@dataclass
class TuneStats:
    """The music check and corpus comparison of one set of tunes (one mode)."""

    mode: str  # "abc" | "none" | "corpus"
    tunes: int = 0
    # rates: None where not measured (the training tunes are described, not checked)
    finished: float | None = None  # share that ended (<eos> or the next X:) within --length
    converts: float | None = None
    headers: float | None = None
    metrical: float | None = None  # mean metrical share over the tunes where it was measured
    ends_with_barline: float | None = None
    valid: float | None = None
    copies: float | None = None
    meters: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    bars: dict[str, float] = field(default_factory=dict)  # median, p10, p90, mean
    meter_tvd: float | None = None  # total variation distance to the training tunes
    key_tvd: float | None = None
    sample_seconds: float = 0.0
    check_seconds: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first tunes, as sampled
    reasons: dict[str, int] = field(default_factory=dict)  # why tunes were not VALID


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
def default_model_dir() -> Path | None:
    """The default model shipped with the package (seqgen/assets/default), or None when this
    installation has none."""
    d = Path(__file__).resolve().parent / "assets" / "default"
    return d if (d / "checkpoint.json").is_file() else None


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
    scored as training scores it (`training.held_out_loss`, with the run's window and batch)."""
    import numpy as np

    from seqgen.training import held_out_loss

    tc = ckpt.train_config
    ids = np.asarray(val_ids)
    if max_tokens:
        ids = ids[: max_tokens + 1]
    if len(ids) - 1 < 2:
        raise UsageError("the held-out split is empty: nothing to score (was the checkpoint "
                         "trained with --val-fraction 0?)")
    T = int(tc.get("seq_len") or 64)
    recurrent = ckpt.model_config.kind != "transformer"
    if not recurrent:
        T = min(T, ckpt.model_config.context_length)
    device = next(ckpt.model.parameters()).device  # (a checkpoint loaded onto a GPU)
    return held_out_loss(ckpt.model, ids, recurrent, T, int(tc.get("batch_size") or 64),
                         device=str(device))


# ----------------------------------------------------------------------------- tune statistics
_KEY = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_MODE_NAMES = {"": "", "maj": "", "ion": "", "m": "m", "min": "m", "aeo": "m", "mix": "mix",
               "dor": "dor", "phr": "phr", "lyd": "lyd", "loc": "loc"}


def normalise_key(k: str | None) -> str:
    """'D Mixolydian' -> 'Dmix', 'E Minor' -> 'Em', 'G' -> 'G'; '?' when unreadable."""
    if not k:
        return "?"
    m = _KEY.match(k)
    if not m:
        return "?"
    word = m.group(3).lower()
    mode = _MODE_NAMES.get(word[:3] if len(word) > 1 else word)
    if mode is None:
        return "?"
    return m.group(1).upper() + m.group(2) + mode


def normalise_meter(m: str | None) -> str:
    if not m:
        return "?"
    return "".join(m.split())


def tune_body(tune: str) -> str:
    """The music of a tune after its header, white space removed (for novelty)."""
    from seqgen.music.abc import body_lines

    return "".join("".join(line.split()) for _, line in body_lines(tune))


class NoveltyIndex:
    """The hashed `n`-grams of the training tunes' bodies; ``copies(tune)`` says whether a tune
    shares a run of `n` consecutive body characters with one of them."""

    def __init__(self, tunes: list[str], n: int = NOVELTY_CHARS):
        self.n = n
        grams: set[int] = set()
        for t in tunes:
            b = tune_body(t)
            grams.update(hash(b[i : i + n]) for i in range(len(b) - n + 1))
        self.grams = grams

    def copies(self, tune: str) -> bool:
        b, n = tune_body(tune), self.n
        return any(hash(b[i : i + n]) in self.grams for i in range(len(b) - n + 1))


def _tvd(a: dict[str, int], b: dict[str, int]) -> float | None:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def _quantiles(xs: list[int]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        return float(s[min(len(s) - 1, int(p * len(s)))])

    return {"p10": q(0.1), "median": q(0.5), "p90": q(0.9), "mean": sum(s) / len(s)}


def describe_tunes(tunes: list[str], mode: str) -> TuneStats:
    """Meters, keys and lengths (bars) of some tunes (no music check)."""
    from seqgen.music.abc import count_bars, parse_header

    st = TuneStats(mode=mode, tunes=len(tunes))
    meters: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for t in tunes:
        h = parse_header(t)
        meters[normalise_meter(h.meter)] += 1
        keys[normalise_key(h.key)] += 1
    st.meters = dict(meters.most_common())
    st.keys = dict(keys.most_common())
    st.bars = _quantiles([count_bars(t) for t in tunes])
    return st


def check_tunes(tunes: list[str], mode: str, reference: TuneStats | None = None,
                novelty: NoveltyIndex | None = None, jobs: int = 2) -> TuneStats:
    """The music check's rates over `tunes`, their distributions and novelty."""
    from seqgen.music.convert import convert_tunes

    st = describe_tunes(tunes, mode)
    t0 = time.perf_counter()
    checks = [r.check for r in convert_tunes(tunes, to="midi", check=True, jobs=jobs)]
    st.check_seconds = time.perf_counter() - t0
    n = max(len(tunes), 1)
    st.converts = sum(bool(c and c.converts) for c in checks) / n
    st.headers = sum(bool(c and c.headers_ok) for c in checks) / n
    st.ends_with_barline = sum(bool(c and c.ends_with_barline) for c in checks) / n
    st.valid = sum(bool(c and c.valid) for c in checks) / n
    shares = [c.metrical_share for c in checks if c is not None and c.metrical_share is not None]
    st.metrical = sum(shares) / len(shares) if shares else None
    reasons: Counter[str] = Counter()
    for c in checks:
        if c is None or c.valid:
            continue
        if not c.converts:
            reasons["does not convert"] += 1
        if not c.headers_ok:
            reasons["missing headers"] += 1
        if not c.metrical_ok:
            reasons["bars of the wrong length"] += 1
        if not c.ends_with_barline:
            reasons["no final barline"] += 1
    st.reasons = dict(reasons.most_common())
    if novelty is not None:
        st.copies = sum(novelty.copies(t) for t in tunes) / n
    if reference is not None:
        st.meter_tvd = _tvd(st.meters, reference.meters)
        st.key_tvd = _tvd(st.keys, reference.keys)
    return st


# ------------------------------------------------------------------------------------ sampling
def sample_eval_tunes(ckpt: Checkpoint, count: int, constrain: str, seed: int,
                      temperature: float = 1.0, length: int = 1500,
                      top_p: float = 1.0) -> tuple[list[str], int]:
    """`count` tunes sampled together from the prompt 'X:' with generator seed `seed`, with the
    ABC constraint or without, each ended by <eos> or the next 'X:' (as ``seqgen sample --tunes``
    ends them) and numbered 1..count in their ``X:`` line as ``seqgen sample --tunes`` numbers
    them (the model's own reference number is not music, and users never see it). Returns the
    tunes and how many ended within `length` characters; a tune that ran out of length is kept as
    it is (and usually fails the check): unlike ``seqgen sample``, eval does not sample again in
    place of failures."""
    import torch

    from seqgen.music.tunes import TUNE_BREAK, number_tune
    from seqgen.sampling import SampleConfig, generate

    cfg = SampleConfig(length=length, temperature=temperature, top_p=top_p, num_samples=count,
                       stop=(TUNE_BREAK,), stop_at_eos=True, constrain=constrain)
    gen = torch.Generator().manual_seed(seed)
    samples = generate(ckpt.model, ckpt.tokenizer, "X:", cfg, gen)
    tunes = [number_tune(("X:" + s.text).strip(), i + 1) + "\n" for i, s in enumerate(samples)]
    return tunes, sum(s.stop_reason != "length" for s in samples)


# --------------------------------------------------------------------------------------- main
def checkpoint_corpus(ckpt: Checkpoint, spec: str | None = None) -> Corpus:
    """The corpus `spec` (default: the one the checkpoint trained on, with its --glob and
    --split-docs), ABC read in the form the model trained on (its --abc-headers)."""
    from seqgen.data import ABC_HEADERS, load_corpus

    tc = ckpt.train_config
    headers = tc.get("abc_headers", "all")  # the form of ABC the model trained on
    if headers not in ABC_HEADERS:
        headers = "all"
    if spec is None:
        try:
            return load_corpus(tc.get("corpus") or ckpt.corpus_name, tc.get("glob"),
                               bool(tc.get("split_docs")), abc_headers=headers)
        except DataError as e:
            raise DataError(f"{e}; if the checkpoint's corpus has moved, give it with "
                            "--corpus") from None
    return load_corpus(spec, abc_headers=headers)


def evaluate(ckpt: Checkpoint, config: EvalConfig | None = None,
             progress: Any = None) -> EvalReport:
    """Evaluate a loaded checkpoint (see the module docstring). `progress(message)` is called
    before each stage (for a status line)."""
    from seqgen.data import prepare_data
    from seqgen.music.tunes import default_top_p

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
            raise UsageError(f"--corpus {corpus.name}: {what}; evaluate on the corpus it "
                             "trained on")
        raise DataError(f"{corpus.name}: {what}; the checkpoint's corpus has changed since it "
                        "was trained, so give the text it trained on with --corpus")
    data = prepare_data(corpus, ckpt.tokenizer, float(tc.get("val_fraction", 0.1)),
                        int(tc.get("seed", 1337)))
    say("scoring the held-out documents")
    loss, scored = validation_loss(ckpt, data.val_ids, config.eval_tokens)
    report = EvalReport(
        checkpoint=str(ckpt.path), corpus=corpus.name, corpus_kind=corpus.kind,
        val_documents=len(data.split.val), val_tokens=scored, val_loss=loss,
        val_bpc=loss / math.log(2), config=asdict(config))
    top_p = config.top_p if config.top_p is not None else default_top_p(ckpt.corpus_kind)
    report.config["top_p"] = top_p
    if ckpt.corpus_kind == "abc" and corpus.kind == "abc" and config.tunes > 0:
        train_tunes = data.split.train
        reference = describe_tunes(train_tunes, "corpus")
        report.corpus_stats = reference
        say("indexing the training tunes for novelty")
        novelty = NoveltyIndex(train_tunes)
        modes = MODES if config.constrain == "both" else (config.constrain,)
        for mode in modes:
            say(f"sampling {config.tunes} tunes (--constrain {mode})")
            ts = time.perf_counter()
            tunes, finished = sample_eval_tunes(ckpt, config.tunes, mode, config.seed,
                                                config.temperature, config.length, top_p)
            sample_s = time.perf_counter() - ts
            say(f"checking {len(tunes)} tunes (--constrain {mode})")
            st = check_tunes(tunes, mode, reference, novelty, config.jobs)
            st.sample_seconds = sample_s
            st.finished = finished / max(len(tunes), 1)
            st.examples = tunes[:3]
            report.modes.append(st)
    report.seconds = time.perf_counter() - t0
    return report
