"""`seqgen inspect`: look inside a model (gradient flow through time, attention maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqgen.cli.console import info, result, unescape, warn

app = typer.Typer(
    no_args_is_help=True,
    help="Look inside a model: how far back the gradient reaches through time (RNN, LSTM, GRU), "
    "and which earlier characters a transformer attends to.",
)

CORPUS_HELP = (
    "Text to take the windows from: a text or ABC file, a directory, or a bundled corpus name "
    "(default: the checkpoint's corpus, else folk)."
)
PM = "Fresh model (without CHECKPOINT)"
MODIFIERS = {"relu": ("activation", "relu"), "tanh": ("activation", "tanh"),
             "identity": ("init", "identity"), "default": ("init", "default")}


def _steps_to_show(T: int, all_steps: bool) -> list[int]:
    if all_steps:
        return list(range(T))
    s = [0] + [2**i for i in range(20) if 2**i < T]
    if T - 1 not in s:
        s.append(T - 1)
    return s


def _is_kind_spec(spec: str) -> bool:
    from seqgen.models import KINDS

    return spec.strip().lower().split("+")[0] in (*KINDS, "irnn")


def _fresh(spec: str, vocab_size: int, base: dict, seed: int, single: bool = False):
    """A fresh model for a --model/--compare entry: KIND[+relu|+tanh][+identity|+default].

    --activation and --init apply to the vanilla rnn entries of a comparison, --num-heads and
    --context-length to the transformer, --embed-dim to the RNN kinds; with one fresh model
    (`single`) of another kind they are an error, as in seqgen train.
    """
    import torch

    from seqgen.config import flag_of
    from seqgen.errors import UsageError
    from seqgen.models import KINDS, ModelConfig, build_model

    kind, *mods = spec.strip().lower().split("+")
    if kind == "irnn":  # Le, Jaitly & Hinton: ReLU + identity initialisation
        kind, mods = "rnn", ["relu", "identity", *mods]
    if kind not in KINDS:
        raise UsageError(f"--compare/--model: unknown model kind {kind!r} in {spec!r}; use "
                         f"{', '.join(KINDS)} or irnn, optionally with +relu, +tanh, +identity "
                         "(e.g. rnn+relu+identity), or a checkpoint directory")
    cfg = dict(base)
    if kind != "rnn":
        for name in ("activation", "init"):
            if single and cfg.get(name) is not None:
                raise UsageError(f"--{name} applies to the vanilla rnn only (--model rnn), "
                                 f"not to {kind}")
        if mods:
            raise UsageError(f"--compare: {spec!r}: +{mods[0]} applies to rnn only")
        cfg.pop("activation", None)
        cfg.pop("init", None)
    if kind != "transformer":
        for name in ("num_heads", "context_length"):
            if single and cfg.get(name) is not None:
                raise UsageError(f"{flag_of(ModelConfig, name)} applies to the transformer only, "
                                 f"not to {kind}")
            cfg.pop(name, None)
    elif single and cfg.get("embed_dim") is not None:
        raise UsageError("--embed-dim applies to the RNN kinds; the transformer's embedding is "
                         "--hidden-size wide")
    for m in mods:
        if m not in MODIFIERS:
            raise UsageError(f"--compare: {spec!r}: unknown modifier +{m}; use "
                             f"{', '.join('+' + k for k in MODIFIERS)}")
        key, value = MODIFIERS[m]
        cfg[key] = value
    config = ModelConfig(kind=kind, vocab_size=vocab_size,
                         **{k: v for k, v in cfg.items() if v is not None})
    torch.manual_seed(seed)  # every fresh model of a comparison starts from the same seed
    return build_model(config)


# The options of `seqgen inspect gradients`, declared once each (their help is the --help text).
Checkpoint = Annotated[str | None, typer.Argument(
    help="A checkpoint directory (a run or its best/). Without it: a fresh model "
    "(see --model).", show_default=False)]
Model = Annotated[str | None, typer.Option(
    "--model", "-m", help="Fresh model kind: rnn, lstm, gru, transformer or irnn "
    "(rnn+relu+identity); modifiers as in --compare. Default lstm.", rich_help_panel=PM)]
Compare = Annotated[str | None, typer.Option(
    "--compare", "-c", help="Comma-separated models to overlay on the same windows: "
    "kinds (fresh, the same size and seed), optionally with +relu, +tanh, +identity for the "
    "rnn, or checkpoint directories; e.g. rnn,rnn+relu+identity,lstm,gru. CHECKPOINT, if "
    "given, comes first.")]
Corpus = Annotated[str | None, typer.Option(
    "--corpus", help=CORPUS_HELP, show_default=False)]
Length = Annotated[int, typer.Option(
    "--length", "-T", min=1, help="Window length T, in characters (input steps).")]
Batch = Annotated[int, typer.Option(
    "--batch", "-b", min=1, help="Windows to average over (the median is shown).")]
Seed = Annotated[int, typer.Option(
    help="Random seed (window positions and fresh weights).")]
Clip = Annotated[float | None, typer.Option(
    "--clip", min=0.0, help="Gradient-norm clipping threshold to show the effect of "
    "(0: none; default: the checkpoint's --grad-clip, else 1.0, seqgen train's default).")]
RecurrentScale = Annotated[float, typer.Option(
    "--recurrent-scale", help="Multiply every W_hh by this before measuring (e.g. 3 to "
    "see an exploding gradient); RNN kinds only.")]
HiddenSize = Annotated[int | None, typer.Option(
    help="Hidden units per layer (default 256).", rich_help_panel=PM)]
NumLayers = Annotated[int | None, typer.Option(
    help="Stacked layers (default 2).", rich_help_panel=PM)]
EmbedDim = Annotated[int | None, typer.Option(
    help="Learned-embedding size, in units "
    "(default 64).", rich_help_panel=PM)]
Embedding = Annotated[str | None, typer.Option(
    help="Input encoding: learned or onehot.", rich_help_panel=PM)]
Activation = Annotated[str | None, typer.Option(
    help="Vanilla rnn: tanh (default) or relu.", rich_help_panel=PM)]
Init = Annotated[str | None, typer.Option(
    help="Vanilla rnn: default or identity (W_hh = I).", rich_help_panel=PM)]
NumHeads = Annotated[int | None, typer.Option(
    help="Transformer heads (default 4).", rich_help_panel=PM)]
ContextLength = Annotated[int | None, typer.Option(
    help="Transformer context, in tokens (default 256; must be >= --length).", rich_help_panel=PM)]
Plot = Annotated[Path, typer.Option(
    "--plot", "-o", help="Write the log-scale PNG plot here.")]
AllSteps = Annotated[bool, typer.Option(
    "--all-steps", help="Print every step back (default: 0, 1, 2, 4, 8, ... T-1).")]


def gradients(
    checkpoint: Checkpoint = None,
    model: Model = None,
    compare: Compare = None,
    corpus: Corpus = None,
    length: Length = 100,
    batch: Batch = 8,
    seed: Seed = 0,
    clip: Clip = None,
    recurrent_scale: RecurrentScale = 1.0,
    hidden_size: HiddenSize = None,
    num_layers: NumLayers = None,
    embed_dim: EmbedDim = None,
    embedding: Embedding = None,
    activation: Activation = None,
    init: Init = None,
    num_heads: NumHeads = None,
    context_length: ContextLength = None,
    plot: Plot = Path("gradients.png"),
    all_steps: AllSteps = False,
) -> None:
    """How far back the gradient reaches: ||dL/dh_t|| per layer at each step back.

    L is the loss of the prediction at the last step of a window of T characters; h_t is each
    layer's hidden state t steps back (LSTM: h_t, and the cell state c_t as 'cell'; transformer:
    the residual stream entering each block). Prints a table of medians over the windows on stdout
    with the parameter gradient norm before and after clipping, and writes a log-scale PNG.
    """
    import torch

    from seqgen.data import load_corpus
    from seqgen.evaluate import checkpoint_corpus
    from seqgen.inspect import (
        EOS_MARK,
        encode_windows,
        gradients_through_time,
        plot_gradients,
        sample_windows,
        show_char,
    )

    torch.set_num_threads(1)  # hundreds of tiny sequential ops: threads cost more than they give
    sizes = dict(hidden_size=hidden_size, num_layers=num_layers, embed_dim=embed_dim,
                 embedding=embedding, activation=activation, init=init, num_heads=num_heads,
                 context_length=context_length)
    entries = _entries(checkpoint, model, compare, sizes, recurrent_scale)
    loaded = _load_entries(entries, checkpoint, compare)
    first = loaded.get(entries[0])
    # read as the checkpoint's run read it (a moved corpus: the error says to give --corpus);
    # for fresh models as 'seqgen train' does
    c = (checkpoint_corpus(first, corpus) if first is not None
         else load_corpus(corpus or "folk", abc_headers="music"))
    windows = sample_windows(c.documents, length, batch, seed)
    if clip is None:
        clip = float(first.train_config.get("grad_clip", 1.0)) if first is not None else 1.0
    fresh_tokenizer: list = []  # built once, from the corpus, for every fresh model
    profiles, described = [], []
    for e in entries:
        m, t, label, summary = _model_for(e, loaded, c.documents, fresh_tokenizer, sizes, seed,
                                          recurrent_scale, single=compare is None)
        unknown = t.unknown_chars("".join(windows).replace(EOS_MARK, ""))  # (the <eos> mark)
        if unknown:
            warn(f"{e}: {len(unknown)} character(s) in the windows from {c.name} are not in "
                 f"the model's vocabulary, read as <unk>: "
                 f"{' '.join(show_char(u) for u in unknown[:12])}")
        with torch.no_grad():
            x = encode_windows(t, windows)
        info(f"{summary}: {batch} windows of {length} characters from {c.name}")
        profiles.append(gradients_through_time(m, x, clip=clip, label=label))
        described.append(summary)

    _print_table(profiles, described, _steps_to_show(length, all_steps))
    title = (f"{c.name}: loss at the last of {length} steps, median of {batch} windows"
             + (f", W_hh x{recurrent_scale:g}" if recurrent_scale != 1.0 else ""))
    plot_gradients(profiles, plot, title=title)
    result(str(plot))


def _entries(checkpoint: str | None, model: str | None, compare: str | None, sizes: dict,
             recurrent_scale: float) -> list[str]:
    """The models to measure, in order: CHECKPOINT, then --compare's, else --model's kind;
    UsageError for options that do not go together."""
    from seqgen.errors import UsageError

    if model is not None and compare is not None:
        raise UsageError("give either --model (one fresh model) or --compare (several), not both")
    if checkpoint is not None and compare is None:
        given = [k for k, v in sizes.items() if v is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} sizes fresh models; a CHECKPOINT "
                             "keeps its own (add --compare KINDS for fresh models beside it)")
    if checkpoint is not None and model is not None:
        raise UsageError("--model makes a fresh model; with a CHECKPOINT, use --compare to add "
                         "fresh models beside it")
    if recurrent_scale <= 0:
        raise UsageError(f"--recurrent-scale must be > 0, not {recurrent_scale:g}")
    entries: list[str] = [checkpoint] if checkpoint is not None else []
    if compare is not None:
        entries += [e.strip() for e in compare.split(",") if e.strip()]
        if not entries:
            raise UsageError("--compare lists no models")
    elif checkpoint is None:
        entries = [model or "lstm"]
    return entries


def _load_entries(entries: list[str], checkpoint: str | None, compare: str | None) -> dict:
    """entry -> Checkpoint for the entries that are checkpoint directories (the others are
    fresh models of a kind)."""
    from seqgen.checkpoint import load_checkpoint
    from seqgen.errors import UsageError

    loaded = {}
    for e in entries:
        if e == checkpoint or not _is_kind_spec(e):
            if e != checkpoint and not Path(e).expanduser().exists():
                raise UsageError(f"{'--compare' if compare is not None else '--model'}: {e!r} "
                                 "is neither a model kind (rnn, lstm, gru, "
                                 "transformer, irnn, with +relu, +tanh, +identity for the rnn) "
                                 "nor a checkpoint directory")
            loaded[e] = load_checkpoint(e)
    return loaded


def _model_for(e: str, loaded: dict, documents: list[str], fresh_tokenizer: list, sizes: dict,
               seed: int, recurrent_scale: float, single: bool):
    """(model, tokenizer, plot label, summary line) of entry `e`: its checkpoint's, or a fresh
    model with a vocabulary of `documents` (built once, kept in `fresh_tokenizer`)."""
    from seqgen.inspect import scale_recurrent
    from seqgen.tokenizer import Tokenizer

    if e in loaded:
        ck = loaded[e]
        m, t = ck.model, ck.tokenizer
        label = f"{Path(e).name or e} (step {ck.step})"
        summary = f"{e}: {ck.model.summary()} (step {ck.step})"
    else:
        if not fresh_tokenizer:
            fresh_tokenizer.append(Tokenizer.build(documents))
        t = fresh_tokenizer[0]
        m = _fresh(e, t.vocab_size, sizes, seed, single=single)
        label = f"{e} (fresh)" if loaded else e
        summary = f"{e}: fresh {m.summary()}"
    if recurrent_scale != 1.0:
        scale_recurrent(m, recurrent_scale)
        summary += f", W_hh x{recurrent_scale:g}"
    return m, t, label, summary


def _print_table(profiles, described: list[str], steps: list[int]) -> None:
    cols = []  # (header, values)
    for i, p in enumerate(profiles):
        prefix = f"{i + 1}:" if len(profiles) > 1 else ""
        for name, v in p.series.items():
            short = name.replace("layer ", "L").replace("block ", "B").replace(" input", " in")
            cols.append((prefix + short, v))
    lines = [f"{i + 1}: {d}" if len(profiles) > 1 else d for i, d in enumerate(described)]
    width = max(10, *(len(h) + 1 for h, _ in cols))
    lines.append("steps back" + "".join(f"{h:>{width}}" for h, _ in cols))
    for s in steps:
        lines.append(f"{s:>10}" + "".join(f"{v[s]:>{width}.3e}" for _, v in cols))
    lines.append("")
    for i, p in enumerate(profiles):
        prefix = f"{i + 1}: " if len(profiles) > 1 else ""
        for name, v in p.series.items():
            f = p.per_step_factor(name)
            if f is None:
                lines.append(f"{prefix}{name}: the gradient is exactly 0 at some step (it does "
                             "not reach that far back at all)")
                continue
            ratio = v[-1] / v[0]
            lines.append(f"{prefix}{name}: {ratio:.2e} of its s=0 norm at s={p.length - 1} "
                         f"(x{f:.3f} per step back)")
        clipped = (f"clipping at {p.clip:g} scales it (and every step's share) by "
                   f"{p.clip_factor:.3g}" if p.clip_factor < 1 else
                   (f"clipping at {p.clip:g} leaves it unchanged" if p.clip > 0
                    else "no clipping"))
        lines.append(f"{prefix}loss {p.loss:.3f} nats; parameter gradient norm "
                     f"{p.grad_norm:.3g} before clipping; {clipped}")
    result("\n".join(lines))


def attention(
    checkpoint: str = typer.Argument(..., help="A transformer checkpoint directory (a run or "
                                     "its best/).", show_default=False),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The text to look at (\\n, \\t, \\\\ "
                               "for newline, tab, backslash); at most the model's context length in characters."),
    output_dir: Path = typer.Option(Path("attention"), "--output-dir", "-o",
                                    help="Write one PNG per layer here (layer1.png, ...)."),
    top: int = typer.Option(1, "--top", min=1, max=5,
                            help="In the text summary, show this many strongest keys per head."),
    layer: int | None = typer.Option(None, "--layer", "-l",
                                     help="Show only this layer (1 = first; default: all)."),
) -> None:
    """Attention weights of every layer and head over PROMPT, as heatmaps and a text summary.

    For each position of the prompt and each head, the summary names the earlier character
    (or the position itself) it attends to most, with its distance back and weight; then what
    each head mostly does (attend to itself, the previous character, the first one, or further
    back). Heatmap rows are query positions, columns the keys; each row sums to 1.
    """
    from collections import Counter

    import torch

    from seqgen.checkpoint import load_checkpoint
    from seqgen.errors import UsageError
    from seqgen.inspect import attention_maps, head_patterns, plot_attention, show_char

    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir}: is a file; give a directory for the maps")
    torch.set_num_threads(1)
    ck = load_checkpoint(checkpoint)
    text = unescape(prompt)
    if ck.model_config.kind == "transformer":
        unknown = ck.tokenizer.unknown_chars(text)
        if unknown:
            warn(f"--prompt: {len(unknown)} character(s) not in the model's vocabulary, read as "
                 f"<unk>: {' '.join(show_char(u) for u in unknown[:12])}")
    ids = torch.tensor(ck.tokenizer.encode(text, errors="replace"), dtype=torch.long)
    maps = attention_maps(ck.model, ids)  # (L, nh, T, T)
    L, nh, T, _ = maps.shape
    chars = list(text)
    info(f"{ck.model.summary()}: {T} characters, {L} layers x {nh} heads")

    if layer is not None and not 1 <= layer <= L:
        raise UsageError(f"--layer must be between 1 and {L} (the model's layers), not {layer}")
    layers = [layer - 1] if layer is not None else list(range(L))
    heads = [(li, hi) for li in layers for hi in range(nh)]
    cw = 14 * top
    lines = ["position char" + "".join(f"{f'L{li + 1}H{hi + 1}':>{cw}}" for li, hi in heads)]
    for q in range(T):
        cells = []
        for li, hi in heads:
            row = maps[li, hi, q]  # (T,)
            w, k = row.topk(min(top, q + 1))
            cells.append(" ".join(f"{show_char(chars[j]) + '-' + str(q - j):>8} {float(v):.2f}"
                                  for v, j in zip(w.tolist(), k.tolist(), strict=True)))
        lines.append(f"{q:>8} {show_char(chars[q]):>4}" + "".join(f"{c:>{cw}}" for c in cells))
    lines.append("(each cell: the key's character - its distance back, then its weight)")
    lines.append("")
    for p in head_patterns(maps):
        if p.layer - 1 not in layers:
            continue
        parts = [(p.self_share, "itself"), (p.previous_share, "the previous character"),
                 (p.first_share, "the first character"), (p.other_share, "further back")]
        parts.sort(key=lambda x: -x[0])
        desc = ", ".join(f"{share:.0%} {what}" for share, what in parts if share > 0)
        # the character that is the strongest key most often
        keys = [chars[j] for j in maps[p.layer - 1, p.head - 1].argmax(-1).tolist()]
        common = Counter(keys).most_common(1)[0]
        lines.append(f"layer {p.layer} head {p.head}: strongest key is {desc}; mean distance "
                     f"back {p.mean_distance:.1f} characters; most often "
                     f"'{show_char(common[0])}' ({common[1] / T:.0%} of positions)")
    paths = []
    for li in layers:
        paths.append(plot_attention(maps[li], chars, Path(output_dir) / f"layer{li + 1}.png",
                                    title=f"{checkpoint}: layer {li + 1} of {L}, "
                                    f"attention over {T} characters"))
    result("\n".join(lines + [str(p) for p in paths]))


def register(root: typer.Typer) -> None:
    app.command("gradients")(gradients)
    app.command("attention")(attention)
    root.add_typer(app, name="inspect")
