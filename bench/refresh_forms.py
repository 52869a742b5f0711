"""Write the form distribution of a checkpoint's training tunes again into its checkpoint.json,
as `seqgen train` computes it now (seqgen.music.form.corpus_forms): for a model trained before
the distribution held something it holds now (the bar plans, 2026-12-06). The weights are not
touched.

    python bench/refresh_forms.py seqgen/assets/default

The training split is made again as `seqgen eval` makes it (seqgen.evaluate.checkpoint_corpus
and the saved train config: corpus, ABC normalisation, held-out share, seed), as `seqgen train`
made it. Refused unless the recomputed
forms and part lengths equal the ones the checkpoint holds (the proof that the split is the
same); then only the new keys are added, and the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path, help="a checkpoint directory (checkpoint.json)")
    args = ap.parse_args()

    from seqgen.checkpoint import load_checkpoint, share_of
    from seqgen.data import prepare_data
    from seqgen.evaluate import checkpoint_corpus
    from seqgen.fileio import atomic_write_text
    from seqgen.music.form import corpus_forms

    path = args.checkpoint / "checkpoint.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    old = meta["corpus"].get("forms")
    if old is None:
        print(f"{path}: no form distribution to refresh (not an ABC model?)", file=sys.stderr)
        return 2
    # the training split as `seqgen eval` makes it again: the corpus read as the model read it
    ckpt = load_checkpoint(args.checkpoint)
    tc = ckpt.train_config
    data = prepare_data(checkpoint_corpus(ckpt), ckpt.tokenizer, float(tc.get("val_fraction", 0.1)),
                        int(tc.get("seed", 1337)), share_of=share_of(ckpt.meta))
    new = corpus_forms(data.split.train)
    strip = [{k: v for k, v in g.items() if k != "plans"} for g in new["groups"]]
    if new["tunes"] != old["tunes"] or strip != old["groups"]:
        print(f"{path}: the training tunes read now are not the ones the checkpoint's forms "
              "came from; nothing written", file=sys.stderr)
        return 1
    meta["corpus"]["forms"] = new
    atomic_write_text(path, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    plans = sum(len(p) for g in new["groups"] for p in g["plans"].values())
    print(f"{path}: {plans} bar plans added over {len(new['groups'])} groups", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
