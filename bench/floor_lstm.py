"""The floor: a plain stateful LSTM in about 40 lines, the recipe every training benchmark must beat.

One LSTM layer of 512 units on a 64-wide embedding; batch 64 x window 64 with the hidden state
carried from window to window (each row reads its own contiguous stretch of the corpus); Adam
4e-3 with cosine decay to 0.1x over the time budget; gradient clipping 1.0; bf16 autocast where
the CPU has native bf16 (else fp32); one thread. The corpus is split exactly as `seqgen train`
splits it (seqgen.data: whole tunes held out for ABC, the last 10% for a single text), so the
held-out losses compare (scored by seqgen's own held_out_loss). It evaluates every
`--eval-every` seconds (the evaluations count in the budget; the final one, after it, does not)
and keeps the best loss.

    python bench/floor_lstm.py ../shared/data/tinyshakespeare.txt --seconds 85
    python bench/floor_lstm.py ../shared/data/irish.abc --seconds 300 --json floor.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import nullcontext

import torch
from torch import nn

EVAL_TOKENS = 262_144  # seqgen train's default --eval-tokens


class LSTM(nn.Module):
    def __init__(self, vocab: int, embed: int = 64, hidden: int = 512):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):  # x (B, T) -> logits (B, T, V)
        h, state = self.lstm(self.embed(x), state)
        return self.head(h), state


def held_out(model, val: torch.Tensor, window: int, batch: int, autocast) -> float:
    """Mean loss (nats/char) on the held-out split, scored by the code that scores `seqgen
    train`'s runs (seqgen.train.held_out: `batch` parallel rows carrying the state across
    windows, the first 262,144 tokens as seqgen's default --eval-tokens), so the losses
    compare."""
    from seqgen.train.held_out import held_out_loss

    return held_out_loss(model, val[: EVAL_TOKENS + 1].numpy(), True, window, batch, autocast)[0]


def train(train_ids, val_ids, vocab, seconds, eval_every, batch=64, window=64, lr=4e-3, bf16=True):
    torch.manual_seed(1337)
    model = LSTM(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    n = (len(train_ids) - 1) // batch
    xs = train_ids[: n * batch].view(batch, n)
    ys = train_ids[1 : n * batch + 1].view(batch, n)
    t0, pos, state, step, tokens = time.perf_counter(), 0, None, 0, 0
    best, history, next_eval = math.inf, [], eval_every
    while (elapsed := time.perf_counter() - t0) < seconds:
        for g in opt.param_groups:  # cosine from lr to 0.1 lr over the budget
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / seconds))))
        if pos + window > n:
            pos, state = 0, None
        with autocast():
            logits, state = model(xs[:, pos : pos + window], state)
            loss = nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                               ys[:, pos : pos + window].flatten())
        state = tuple(s.detach() for s in state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        pos, step, tokens = pos + window, step + 1, tokens + batch * window
        if time.perf_counter() - t0 >= next_eval:
            v = held_out(model, val_ids, window, batch, autocast)
            best = min(best, v)
            history.append({"step": step, "s": round(time.perf_counter() - t0, 1), "val": v})
            next_eval += eval_every
    v = held_out(model, val_ids, window, batch, autocast)
    best = min(best, v)
    history.append({"step": step, "s": round(time.perf_counter() - t0, 1), "val": v})
    return {"best_val": best, "final_val": v, "steps": step, "tokens": tokens,
            "train_s": seconds, "tok_s": tokens / seconds, "history": history}


def native_bf16() -> bool:
    """The CPU has bf16 arithmetic (AVX-512 BF16 or AMX), per /proc/cpuinfo's flags."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--seconds", type=float, default=85.0, help="training budget (s)")
    ap.add_argument("--eval-every", type=float, default=15.0, help="seconds between evaluations")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    from seqgen.data import load_corpus, prepare_data

    torch.set_num_threads(a.threads)
    data = prepare_data(load_corpus(a.corpus), cache=False)
    ids = lambda a_: torch.from_numpy(a_.astype("int64"))  # noqa: E731
    bf16 = not a.fp32 and native_bf16()
    r = train(ids(data.train_ids), ids(data.val_ids), data.tokenizer.vocab_size, a.seconds,
              a.eval_every, bf16=bf16)
    r.update(corpus=a.corpus, precision="bf16" if bf16 else "fp32", threads=a.threads)
    print(f"floor LSTM 1x512: best held-out {r['best_val']:.4f} nats/char, {r['steps']} steps, "
          f"{r['tok_s']:,.0f} tokens/s ({r['precision']}, {a.threads} thread)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
