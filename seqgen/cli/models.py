"""`seqgen models`: the model kinds, their options, and their sizes for each training preset."""

from __future__ import annotations

from pathlib import Path

import typer

DESCRIPTIONS = {
    "rnn": "Vanilla (Elman) RNN: h_t = act(W_hh h_t-1 + W_xh x_t + b), y_t = W_hy h_t.",
    "lstm": "Long short-term memory: gated cell state, the robust choice for long dependencies.",
    "gru": "Gated recurrent unit: two gates, no separate cell state; a lighter LSTM.",
    "transformer": "Decoder-only pre-norm transformer, causal self-attention, tied output layer, "
    "KV cache sliding past the context length.",
}
OPTIONS = {
    "rnn": ["embedding", "embed_dim", "hidden_size", "num_layers", "dropout", "input_dropout",
            "activation", "init"],
    "lstm": ["embedding", "embed_dim", "hidden_size", "num_layers", "dropout", "input_dropout"],
    "gru": ["embedding", "embed_dim", "hidden_size", "num_layers", "dropout", "input_dropout"],
    "transformer": ["embedding", "hidden_size", "num_layers", "num_heads", "context_length",
                    "positional", "dropout"],
}


def preset_configs(kind: str, vocab_size: int) -> dict[str, object]:
    """ModelConfig of `kind` for each training preset."""
    from seqgen.models import ModelConfig
    from seqgen.train import MODEL_PRESETS, family

    return {name: ModelConfig(kind=kind, vocab_size=vocab_size, **sizes[family(kind)])
            for name, sizes in MODEL_PRESETS.items()}


def models(
    ctx: typer.Context,
    vocab_size: int = typer.Option(
        96, "--vocab-size", min=1,
        help="Vocabulary size the parameter counts assume, in tokens (characters + 2 specials).",
    ),
    vocab: Path | None = typer.Option(
        None, "--vocab", help="Take the vocabulary size from this vocabulary JSON file (or the vocabulary of "
        "this checkpoint directory) instead.",
    ),
) -> None:
    """List the model kinds, their options, and each preset's size and parameter count."""
    from rich.console import Console
    from rich.table import Table

    from seqgen.config import flag_of
    from seqgen.models import KINDS, build_model
    from seqgen.train import TrainConfig

    if vocab is not None:
        from seqgen.cli.tokenizer import load_vocab

        if getattr(ctx.get_parameter_source("vocab_size"), "name", None) == "COMMANDLINE":
            from seqgen.errors import UsageError

            raise UsageError("give --vocab or --vocab-size, not both")
        vocab_size = load_vocab(vocab).vocab_size
    kinds = Table(title="Model kinds (seqgen train --model KIND) and their options",
                  title_justify="left", show_lines=True)
    for col in ("kind", "model", "options"):
        kinds.add_column(col)
    sizes = Table(title=f"Sizes per training preset (seqgen train --preset NAME), for a "
                  f"vocabulary of {vocab_size} tokens", title_justify="left")
    for col, just in [("kind", "left"), ("preset", "left"), ("summary", "left"),
                      ("parameters", "right")]:
        sizes.add_column(col, justify=just)  # type: ignore[arg-type]
    for kind in KINDS:
        kinds.add_row(kind, DESCRIPTIONS[kind],
                      " ".join(flag_of(TrainConfig, o) for o in OPTIONS[kind]))
        for name, config in preset_configs(kind, vocab_size).items():
            # built for real: the presets take 0.2 s together, while torch's "meta" device
            # (shapes only) first imports torch._dynamo, about 2 s
            model = build_model(config)
            sizes.add_row(kind, name, model.summary(), f"{model.num_params():,}")
    out = Console(highlight=False)
    out.print(kinds)
    out.print(sizes)


def register(root: typer.Typer) -> None:
    root.command("models")(models)
