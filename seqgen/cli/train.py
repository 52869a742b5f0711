"""`seqgen train`: train a model on a corpus, with a progress bar, checkpoints and a summary."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from seqgen.cli.console import console, info, result, warn

CORPUS_HELP = (
    "A text or ABC file, a directory (see --glob), or a bundled corpus name "
    "('seqgen tokenizer corpora' lists them; a bundled name means the bundled corpus: write "
    "./folk for a folder named folk). Default: folk."
)
FP = " Default: from --preset."
PM = "Model (default: from --preset)"
PO = "Optimisation"
PB = "Budget and checkpoints"


# The options of `seqgen train`, declared once each (their help is the --help text).
Corpus = Annotated[str, typer.Argument(
    help=CORPUS_HELP, show_default=False)]
Kind = Annotated[str, typer.Option(
    "--model", "--kind", "-m", help="Model kind: rnn, lstm, gru or transformer.",
    rich_help_panel=PM)]
Preset = Annotated[str, typer.Option(
    "--preset",
    help="Model size and optimisation settings: tiny, small, medium, or auto (on a time "
    "budget: times candidate sizes for a few seconds of it, then picks the size, dropout, batch "
    "and learning rate for this machine, budget and corpus; with --steps, --threads, "
    "--hidden-size or --num-layers: from the corpus size and budget). Individual options "
    "below override it.", rich_help_panel=PM)]
Embedding = Annotated[str | None, typer.Option(
    help="Input encoding: learned or onehot (default learned).", rich_help_panel=PM)]
EmbedDim = Annotated[int | None, typer.Option(
    help="Learned-embedding size (RNN kinds), in units." + FP, rich_help_panel=PM)]
HiddenSize = Annotated[int | None, typer.Option(
    help="Hidden units per layer (RNN kinds) or transformer width." + FP, rich_help_panel=PM)]
NumLayers = Annotated[int | None, typer.Option(
    help="Number of stacked layers." + FP, rich_help_panel=PM)]
Dropout = Annotated[float | None, typer.Option(
    help="Dropout probability, in [0, 1): RNN kinds on the last layer's output (and between "
    "layers), the transformer on its embeddings, attention and MLP outputs." + FP,
    rich_help_panel=PM)]
InputDropout = Annotated[float | None, typer.Option(
    help="RNN kinds: dropout probability on the inputs (the embeddings), in [0, 1). Default: "
    "the run's dropout where --preset auto calibrates (a --minutes budget), else 0.",
    rich_help_panel=PM)]
Activation = Annotated[str | None, typer.Option(
    help="Vanilla rnn only: tanh or relu (default tanh).", rich_help_panel=PM)]
Init = Annotated[str | None, typer.Option(
    help="Vanilla rnn only: default (torch's initialisation; the default) or identity (IRNN).",
    rich_help_panel=PM)]
NumHeads = Annotated[int | None, typer.Option(
    help="Transformer attention heads." + FP, rich_help_panel=PM)]
ContextLength = Annotated[int | None, typer.Option(
    help="Transformer attention window, in tokens." + FP, rich_help_panel=PM)]
Positional = Annotated[str | None, typer.Option(
    help="Transformer positions: learned or sinusoidal (default learned).", rich_help_panel=PM)]
BatchSize = Annotated[int | None, typer.Option(
    "--batch-size", "-b", help="Sequences per optimizer step (over all processes)." + FP,
    rich_help_panel=PO)]
SeqLen = Annotated[int | None, typer.Option(
    help="Tokens per training window (the truncated-BPTT length for RNN kinds)." + FP,
    rich_help_panel=PO)]
Batching = Annotated[str, typer.Option(
    help="RNN kinds: stateful (auto: windows follow each other and the hidden state is "
    "carried, truncated BPTT) or random (random windows from a zero state). The transformer "
    "always uses random windows.", rich_help_panel=PO)]
Lr = Annotated[float | None, typer.Option(
    "--lr", help="Peak learning rate." + FP, rich_help_panel=PO)]
MinLrRatio = Annotated[float, typer.Option(
    help="The cosine decays to lr times this.", rich_help_panel=PO)]
WarmupSteps = Annotated[int, typer.Option(
    "--warmup-steps", "--warmup", help="Linear learning-rate warmup, in steps.",
    rich_help_panel=PO)]
Schedule = Annotated[str, typer.Option(
    help="After warmup: cosine (decay over the run's steps "
    "or minutes) or constant.", rich_help_panel=PO)]
WeightDecay = Annotated[float | None, typer.Option(
    help="AdamW decoupled weight decay on weight matrices." + FP, rich_help_panel=PO)]
GradClip = Annotated[float, typer.Option(
    help="Clip the gradient norm to this value (0: no clipping).", rich_help_panel=PO)]
Seed = Annotated[int, typer.Option(
    "--seed", "-s", help="Random seed (initialisation, data order, split).", rich_help_panel=PO)]
ValFraction = Annotated[float, typer.Option(
    help="Share of the corpus's characters held out, in [0, 1): whole documents when a set of "
    "them comes within 2x of it, else the end of the text (the start line says which).",
    rich_help_panel=PO)]
Glob = Annotated[str | None, typer.Option(
    help="Which files of a directory corpus to read, e.g. '*.abc' (default: all).",
    rich_help_panel=PO)]
SplitDocs = Annotated[bool, typer.Option(
    "--split-docs", help="Treat blank-line separated blocks of a text file as separate "
    "documents.", rich_help_panel=PO)]
AbcHeaders = Annotated[str, typer.Option(
    help="ABC corpora: music (keep the header fields that shape the music, X T M L Q "
    "R P V K in that order, and fill in a missing L:) or all (the tunes as written).",
    rich_help_panel=PO)]
AbcNormalise = Annotated[bool, typer.Option(
    "--abc-normalise/--no-abc-normalise",
    help="ABC corpora: repair what has one right reading (ties between different notes made "
    "slurs, words in quotes made annotations, ...) and drop the tunes abc2midi, abcm2ps or "
    "music21 would still reject; the counts are shown at the start, the dropped tunes listed in "
    "RUN/normalise.json.", rich_help_panel=PO)]
Steps = Annotated[int | None, typer.Option(
    "--steps", help="Optimizer steps to train for (with --minutes: whichever ends "
    "first).", rich_help_panel=PB)]
Minutes = Annotated[float | None, typer.Option(
    "--minutes", help="Wall-clock training budget in minutes, the final validation and save "
    "included, the set-up not (default 5 when --steps is not given; on --resume, the run's "
    "time in all).", rich_help_panel=PB)]
EvalEvery = Annotated[int, typer.Option(
    help="Validate and save a checkpoint every this many steps.", rich_help_panel=PB)]
EvalTokens = Annotated[int, typer.Option(
    help="Validate on at most this many held-out tokens.", rich_help_panel=PB)]
Patience = Annotated[int, typer.Option(
    help="Stop after this many validations without a new best (0: never).", rich_help_panel=PB)]
LogEvery = Annotated[int, typer.Option(
    help="Steps between train-loss points in metrics.jsonl.", rich_help_panel=PB)]
LogGradNorms = Annotated[bool, typer.Option(
    "--log-grad-norms", help="Also write the gradient norm (before clipping) of every "
    "step to metrics.jsonl and loss.png, not only every --log-every steps.", rich_help_panel=PB)]
Out = Annotated[str | None, typer.Option(
    "--out", "-o", help="Run directory (default: checkpoints/<corpus name>, numbered if "
    "taken).", rich_help_panel=PB)]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Let --out replace a checkpoint already there (its best/ "
    "goes at this run's first save).", rich_help_panel=PB)]
Resume = Annotated[str | None, typer.Option(
    "--resume", "-r", help="Continue the run in this directory exactly where it stopped "
    "(give a larger --steps or --minutes to train longer; give CORPUS only if it has moved).",
    rich_help_panel=PB)]
InitFrom = Annotated[str | None, typer.Option(
    help="Fine-tune the model of this checkpoint on CORPUS (same characters needed).",
    rich_help_panel=PB)]
Device = Annotated[str, typer.Option(
    help="auto, cpu, cuda or mps.", rich_help_panel=PB)]
Precision = Annotated[str, typer.Option(
    help="fp32, bf16 (autocast) or auto (bf16 where the hardware has native bf16, as the "
    "benchmarks found best; else fp32).", rich_help_panel=PB)]
Compile = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the model.", rich_help_panel=PB)]
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: the cores idle at the start, at most one per "
    "core; threads on busy cores wait for each other).", rich_help_panel=PB)]
Plot = Annotated[bool, typer.Option(
    "--plot/--no-plot", help="Write loss.png at the end.", rich_help_panel=PB)]


def train(
    ctx: typer.Context,
    corpus: Corpus = "folk",
    kind: Kind = "lstm",
    preset: Preset = "auto",
    embedding: Embedding = None,
    embed_dim: EmbedDim = None,
    hidden_size: HiddenSize = None,
    num_layers: NumLayers = None,
    dropout: Dropout = None,
    input_dropout: InputDropout = None,
    activation: Activation = None,
    init: Init = None,
    num_heads: NumHeads = None,
    context_length: ContextLength = None,
    positional: Positional = None,
    batch_size: BatchSize = None,
    seq_len: SeqLen = None,
    batching: Batching = "auto",
    lr: Lr = None,
    min_lr_ratio: MinLrRatio = 0.1,
    warmup_steps: WarmupSteps = 50,
    schedule: Schedule = "cosine",
    weight_decay: WeightDecay = None,
    grad_clip: GradClip = 1.0,
    seed: Seed = 1337,
    val_fraction: ValFraction = 0.1,
    glob: Glob = None,
    split_docs: SplitDocs = False,
    abc_headers: AbcHeaders = "music",
    abc_normalise: AbcNormalise = True,
    steps: Steps = None,
    minutes: Minutes = None,
    eval_every: EvalEvery = 100,
    eval_tokens: EvalTokens = 262144,
    patience: Patience = 0,
    log_every: LogEvery = 10,
    log_grad_norms: LogGradNorms = False,
    out: Out = None,
    overwrite: Overwrite = False,
    resume: Resume = None,
    init_from: InitFrom = None,
    device: Device = "auto",
    precision: Precision = "auto",
    compile: Compile = False,
    threads: Threads = None,
    plot: Plot = True,
) -> None:
    """Train a character-level model on CORPUS and write a checkpoint directory.

    Prints the run directory on stdout; progress, a summary table and errors go to stderr.
    Ctrl-C saves a checkpoint that --resume continues. Under `torchrun --nproc_per_node=N -m
    seqgen train ...` it trains with DistributedDataParallel.
    """
    from seqgen.fileio import WriteError
    from seqgen.train import TrainConfig, Trainer, plot_loss_curve

    params = dict(ctx.params)
    params.pop("resume")
    params.pop("plot")
    given = {k for k in params
             if getattr(ctx.get_parameter_source(k), "name", None) == "COMMANDLINE"}
    if params.get("init_from") and "kind" in given:
        from seqgen.errors import UsageError

        raise UsageError(f"--model: --init-from {params['init_from']} fine-tunes its own model; "
                         "drop --model")
    if resume is None:
        from seqgen.data import check_glob

        check_glob(params["corpus"], params["glob"])
    config = TrainConfig(**params)
    overrides = None
    if resume is not None:
        overrides = {k: v for k, v in params.items() if k in given}
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if not rank0:
        console.quiet = True
    with _ProgressView(enabled=rank0) as view:
        trainer = Trainer(config, view.update, resume=resume, overrides=overrides)
        res = trainer.run()
    if not rank0:
        return
    if plot and res.history:
        try:
            plot_loss_curve(res.history, res.out / "loss.png", title=f"{res.corpus_name}: "
                            f"{res.model_summary}", grad_clip=res.config.grad_clip)
        except (OSError, WriteError) as e:  # the run is saved; a missing picture must not fail it
            warn(f"{res.out / 'loss.png'} not written: "
                 f"{getattr(e, 'strerror', None) or str(e).rpartition(': ')[2]}")
    _summary(res)
    result(str(res.out))


class _ProgressView:
    """A rich progress bar on stderr fed by the training callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and not console.quiet
        self.progress = None
        self.task = None

    def __enter__(self):
        return self

    def _start(self) -> None:
        if self.enabled and self.progress is None:
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("[bold]step {task.fields[step]}"),
                BarColumn(bar_width=30),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
                TextColumn("{task.fields[rate]} tok/s (mean)"),
                TextColumn("ETA {task.fields[eta]}"),
                console=console, transient=False, refresh_per_second=4,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=1000, step="0", loss="-", val="-",
                                               rate="-", eta="-")

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False

    def update(self, ev) -> None:
        if not self.enabled:
            return
        if ev.kind == "start":
            console.print(ev.message, highlight=False, soft_wrap=True)
            self._start()
            return
        if self.progress is None:
            return
        frac = ev.fraction_done
        fields = {"step": f"{ev.step}" + (f"/{ev.total_steps}" if ev.total_steps else "")}
        if ev.train_loss is not None:
            fields["loss"] = f"{ev.train_loss:.3f}"
        if ev.val_loss is not None:
            fields["val"] = f"{ev.val_loss:.3f}"
        if ev.tokens_per_s:
            fields["rate"] = f"{ev.tokens_per_s:,.0f}"
        if frac:
            remaining = ev.elapsed_s * (1 - frac) / frac
            fields["eta"] = _fmt_time(remaining)
        self.progress.update(self.task, completed=int(1000 * (frac or 0)), **fields)
        if ev.kind == "eval" and ev.val_loss is not None:
            best = " (best)" if ev.best_val_loss == ev.val_loss else ""
            self.progress.console.print(
                f"step {ev.step}: val {ev.val_loss:.4f} nats/char, {ev.val_bpc:.3f} bits/char"
                f"{best}", highlight=False)


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _time_row(res) -> str:
    """The summary's time and speed, with what each counts."""
    budget = res.config.minutes
    return (f"{res.elapsed_s:.1f} s of training and validation"
            + (f" (budget {budget * 60:g} s)" if budget else "") + "; "
            f"{res.tokens_per_s:,.0f} tokens/s, the mean over {res.train_steps:,} training steps "
            "(as the bar's)")


def _summary(res) -> None:
    from rich.table import Table

    t = Table(title="training summary", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    cfg = res.config

    def f(v, fmt=".4f"):
        return "-" if v is None else format(v, fmt)

    rows = [
        ("model", f"{res.model_summary}"),
        ("corpus", f"{res.corpus_name} ({res.corpus_kind}): {res.train_tokens:,} train / "
                   f"{res.val_tokens:,} validation tokens"),
        ("batches", f"{cfg.batch_size} x {cfg.seq_len} tokens, lr {cfg.lr:g}, "
                    f"{cfg.schedule} schedule, clip {cfg.grad_clip:g}, " + (
                        f"preset {cfg.preset}" if not cfg.init_from else
                        f"optimisation of preset {cfg.preset}; model of --init-from "
                        f"{cfg.init_from}")),
        ("device", f"{res.device}, {res.precision}"
                   + (f", {res.world_size} processes" if res.world_size > 1 else "")),
        ("steps", f"{res.step:,} ({'stopped by ' + res.stop_reason})"),
        ("time", _time_row(res)),
        ("train loss", f(res.train_loss)),
        ("validation loss", "-" if res.val_loss is None else
         f"{res.val_loss:.4f} nats/char ({res.val_loss / 0.6931471805599453:.3f} bits/char)"),
        ("best validation", "-" if res.best_val_loss is None else
         f"{res.best_val_loss:.4f} nats/char at step {res.best_step}"),
        ("checkpoint", f"{res.out}" + (f" (best: {res.best})" if res.best else "")),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if res.best is not None:  # the lowest validation loss, which the last weights may not have
        info(f"sample with: seqgen sample {res.best}")


def register(app: typer.Typer) -> None:
    app.command("train", no_args_is_help=False)(train)
