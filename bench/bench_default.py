"""Candidates for the shipped default model, side by side: size, held-out loss, first character.

    python bench/bench_default.py default RUN_A/best RUN_B/best

For each checkpoint: its kind and parameters, the size of its files (the shipped model must stay
<= 10 MB), its held-out loss on its own held-out split (what `seqgen eval CKPT --tunes 0`
prints; splits differ between corpora read differently, so these are not comparable across
models trained on different text), the loss on one common text that none of them trained on:
the held-out tenth of ../shared/data/irish.abc (the MIT 6.S191 lab's Irish tunes, music
headers, normalised as training normalises ABC; skipped without ../shared), and the time from
starting `seqgen sample CKPT --length 1` as a new process to its first byte on stdout (median of
--repeats, the checkpoints taken in turn, so machine noise hits each alike).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench_sample import first_char_seconds  # (bench/ is on the path when run)

from seqgen.checkpoint import load_checkpoint
from seqgen.data import load_corpus, prepare_data
from seqgen.evaluate import EvalConfig, evaluate, validation_loss

COMMON = Path(__file__).resolve().parents[2] / "shared" / "data" / "irish.abc"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="checkpoint directories ('default': shipped)")
    ap.add_argument("--repeats", type=int, default=5, help="first-character runs per model")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    common = (load_corpus(str(COMMON), abc_headers="music", abc_normalise=True)
              if COMMON.is_file() else None)
    rows = []
    for spec in args.checkpoints:
        ckpt = load_checkpoint(spec)
        size = sum(p.stat().st_size for p in Path(ckpt.path).iterdir() if p.is_file())
        own = evaluate(ckpt, EvalConfig(tunes=0)).val_loss
        other = None
        if common is not None:
            data = prepare_data(common, ckpt.tokenizer, 0.1, 1337, cache=False)
            other, _ = validation_loss(ckpt, data.val_ids)
        mc = ckpt.model_config
        params = sum(p.numel() for p in ckpt.model.parameters())
        rows.append([spec, f"{mc.kind} {mc.num_layers}x{mc.hidden_size}", f"{params / 1e6:.2f}M",
                     f"{size / 1e6:.1f} MB", f"{own:.4f}",
                     "-" if other is None else f"{other:.4f}"])
    firsts: dict[str, list[float]] = {spec: [] for spec in args.checkpoints}
    for _ in range(args.repeats):
        for spec in args.checkpoints:
            firsts[spec].append(first_char_seconds(Path(spec)))
    print("| checkpoint | model | parameters | files | held-out loss, own split (nats/char) | "
          "irish.abc held-out (nats/char) | first character (median) |")
    print("|---|---|---|---|---|---|---|")
    for row, spec in zip(rows, args.checkpoints, strict=True):
        print("| " + " | ".join(row) + f" | {statistics.median(firsts[spec]):.2f} s |")


if __name__ == "__main__":
    main()
