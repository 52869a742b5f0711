"""Training benchmarks: quality per time budget, throughput, precision, batching, memory.

Each scenario prints a Markdown table for docs/benchmarks.md ("Training") and the command that
produced it. Variants compared with each other run interleaved in one process (A B A B ...), and
tables quote medians. The reference corpora are read from ../shared/data/ (never copied).

    python bench/bench_train.py shakespeare --repeats 2   # seqgen train tinyshakespeare.txt
                                   # --minutes 1.5 against bench/floor_lstm.py, interleaved
    python bench/bench_train.py irish --repeats 1  # the same on irish.abc, 5 minutes
    python bench/bench_train.py folk --baseline /tmp/main --repeats 1   # seqgen train --minutes 2
                                   # from this checkout and from another (main's), interleaved
    python bench/bench_train.py presets --minutes 1.5
    python bench/bench_train.py batching --minutes 1
    python bench/bench_train.py precision --steps 40 --repeats 3
    python bench/bench_train.py transformer --steps 30 --repeats 3
    python bench/bench_train.py nanogpt --steps 30 --repeats 3   # side by side with a nanoGPT loop
    python bench/bench_train.py nanogpt --shapes gpu --nanogpt /tmp/nanogpt --precisions bf16
    python bench/bench_train.py memory --mb 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SHAKESPEARE = DATA / "tinyshakespeare.txt"
IRISH = DATA / "irish.abc"


THREADS: int | None = None  # --threads


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _cli_run(corpus: Path | str, extra: list[str], out: Path,
             pythonpath: Path | None = None) -> dict:
    """`seqgen train CORPUS EXTRA --out OUT` in a subprocess (the seqgen of source tree
    `pythonpath`, if given); its final metrics and wall time."""
    cmd = [sys.executable, "-m", "seqgen", "train", str(corpus), *extra, "--out", str(out),
           "--overwrite", "--no-plot"]
    env = dict(os.environ, COLUMNS="200",
               **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    t0 = time.perf_counter()
    # (run from the tree: `python -m` puts the working directory ahead of PYTHONPATH)
    p = subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=pythonpath)
    wall = time.perf_counter() - t0
    # the run's own time (calibration, training, validation, the final save), as its summary
    # table says it: the time the budget counts
    run_s = re.search(r"time\W+([\d.]+) s of training", p.stderr)
    meta = json.loads((out / "checkpoint.json").read_text())
    best = json.loads((out / "best" / "checkpoint.json").read_text())
    hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [h["tokens_per_s"] for h in hist if h.get("tokens_per_s") and "val_loss" not in h]
    return {
        "cmd": "seqgen train " + " ".join([str(corpus), *extra]),
        "summary": meta["summary"], "step": meta["step"], "wall_s": wall,
        "train_s": meta["metrics"].get("time_s"), "final_val": meta["metrics"].get("val_loss"),
        "best_val": best["metrics"]["val_loss"], "best_step": best["step"],
        "tok_s": statistics.median(rates) if rates else float("nan"),
        "preset": meta["train_config"]["preset"], "precision": meta["train_config"]["precision"],
        "auto": next((line.split(" | ")[-1] for line in p.stderr.splitlines()
                      if " | auto: " in line), "not calibrated"),
        "run_s": float(run_s.group(1)) if run_s else float("nan"),
    }


def _quality_table(rows: list[tuple[str, dict]]) -> None:
    print("| run | model | steps | train time (s) | tokens/s | final val (nats/char) | "
          "best val (nats/char) @ step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['summary']} | {r['step']:,} | {r['train_s']:.0f} | {r['tok_s']:,.0f} "
              f"| {r['final_val']:.4f} | {r['best_val']:.4f} @ {r['best_step']:,} |")


def _floor_run(corpus: Path, seconds: float, out: Path) -> dict:
    """bench/floor_lstm.py CORPUS --seconds S in a subprocess; its result and wall time."""
    cmd = [sys.executable, str(Path(__file__).with_name("floor_lstm.py")), str(corpus),
           "--seconds", str(seconds), "--json", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    best = min(r["history"], key=lambda h: h["val"])
    return {"summary": f"floor: lstm 1x512, embed 64 ({r['precision']}, 1 thread)",
            "step": r["steps"], "wall_s": time.perf_counter() - t0, "train_s": r["train_s"],
            "final_val": r["final_val"], "best_val": r["best_val"], "best_step": best["step"],
            "tok_s": r["tok_s"], "preset": "floor", "precision": r["precision"]}


def _against_floor(corpus: Path, args, target: float | None) -> None:
    """`seqgen train CORPUS --minutes M` (plus --extra) and the floor at the same budget,
    interleaved (floor, seqgen, floor, seqgen, ...): a table, medians and the gap."""
    rows, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            loads.append(_load())
            rows.append((f"floor #{i + 1}", _floor_run(corpus, args.minutes * 60,
                                                       Path(tmp) / "floor.json")))
            loads.append(_load())
            r = _cli_run(corpus, ["--minutes", str(args.minutes), *args.extra], Path(tmp) / "run")
            rows.append((f"seqgen #{i + 1}", r))
            print(f"{r['summary']}: {r['auto']}", file=sys.stderr, flush=True)
    print(f"`seqgen train {corpus.name} --minutes {args.minutes} {' '.join(args.extra)}` against "
          f"`bench/floor_lstm.py {corpus.name} --seconds {args.minutes * 60:g}`, interleaved "
          f"(load average at each start: {', '.join(loads)}):\n")
    _quality_table(rows)
    floor = statistics.median(r["best_val"] for n, r in rows if n.startswith("floor"))
    ours = [r for n, r in rows if n.startswith("seqgen")]
    best = statistics.median(r["best_val"] for r in ours)
    over = max(r["run_s"] / (args.minutes * 60) - 1 for r in ours)
    print(f"\nmedian best held-out: seqgen {best:.4f}, floor {floor:.4f}, seqgen - floor "
          f"{best - floor:+.4f} nats/char (target <= -0.03"
          + (f"; and <= {target}" if target else "") + f"); seqgen's run time (calibration, "
          f"training, validation, save) at most {over:+.1%} of the budget (target within 2%); "
          f"whole-process wall time {', '.join(format(r['wall_s'], '.0f') for r in ours)} s")


def shakespeare(args) -> None:
    _against_floor(SHAKESPEARE, args, 1.42)


def irish(args) -> None:
    _against_floor(IRISH, args, None)


def folk(args) -> None:
    """`seqgen train --minutes M` (the bundled folk corpus) with this checkout and with the one
    in --baseline (another seqgen source tree, e.g. main's), interleaved."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, tree in (("baseline", args.baseline), ("this", None)):
                r = _cli_run("folk", ["--minutes", str(args.minutes), *args.extra],
                             Path(tmp) / "run", pythonpath=tree)
                rows.append((f"{name} #{i + 1} (load {_load()})", r))
    print(f"`seqgen train --minutes {args.minutes}` (folk) from {args.baseline} and from this "
          "checkout, interleaved:\n")
    _quality_table(rows)


def presets(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants or ["tiny", "small", "medium", "floor"]:
            if variant == "floor":  # bench/floor_lstm.py at the same budget
                rows.append(("floor", _floor_run(args.corpus, args.minutes * 60,
                                                 Path(tmp) / "floor.json")))
                continue
            opts = variant.split()
            if not variant.startswith("-"):
                opts = ["--preset", *opts]
            extra = [*opts, "--minutes", str(args.minutes), *args.extra]
            rows.append((variant, _cli_run(args.corpus, extra, Path(tmp) / "run")))
    print(f"`seqgen train {args.corpus.name} --minutes {args.minutes} --preset P` "
          f"(load average {_load()}):\n")
    _quality_table(rows)


def batching(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in ("stateful", "random"):
            extra = ["--minutes", str(args.minutes), "--batching", b, *args.extra]
            rows.append((f"lstm {b}", _cli_run(args.corpus, extra, Path(tmp) / "run")))
        rows.append(("transformer (random)", _cli_run(
            args.corpus, ["--minutes", str(args.minutes), "--model", "transformer", *args.extra],
            Path(tmp) / "run")))
    print(f"`seqgen train {args.corpus.name} --minutes {args.minutes} --batching B` "
          f"(load average {_load()}):\n")
    _quality_table(rows)


def _throughput(cfg_kw: dict, steps: int) -> float:
    """Median training tokens/s over 5-step windows of a `steps`-step run (evaluation excluded)."""
    from seqgen.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        res = train(TrainConfig(corpus=str(SHAKESPEARE), steps=steps, eval_every=10**9,
                                eval_tokens=4096, log_every=5, warmup_steps=5, device="cpu",
                                out=str(Path(tmp) / "run"), threads=THREADS, **cfg_kw))
    rates = [h["tokens_per_s"] for h in res.history[1:] if h.get("tokens_per_s")]
    return statistics.median(rates)


def _compare(variants: dict[str, dict], steps: int, repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, kw in variants.items():
            results[name].append(_throughput(kw, steps))
    return {k: statistics.median(v) for k, v in results.items()}


def precision(args) -> None:
    shapes = {
        "lstm 1x128 (tiny), batch 32x64": dict(kind="lstm", preset="tiny"),
        "lstm 1x256 (small), batch 32x64": dict(kind="lstm", preset="small"),
        "lstm 1x512, batch 64x64": dict(kind="lstm", preset="small", hidden_size=512,
                                        batch_size=64),
        "gru 1x256 (small), batch 32x64": dict(kind="gru", preset="small"),
        "rnn 1x256 (small), batch 32x64": dict(kind="rnn", preset="small"),
        "transformer 4x128 ctx 64 (small), batch 12": dict(kind="transformer", preset="small",
                                                           dropout=0.0),
    }
    print(f"`python bench/bench_train.py precision --steps {args.steps} --repeats {args.repeats}` "
          f"(tinyshakespeare, CPU; medians of {args.repeats} interleaved runs; load average "
          f"{_load()}):\n")
    print("| model | fp32 tokens/s | bf16 tokens/s | bf16 / fp32 |")
    print("|---|---:|---:|---:|")
    for name, kw in shapes.items():
        r = _compare({"fp32": dict(kw, precision="fp32"), "bf16": dict(kw, precision="bf16")},
                     args.steps, args.repeats)
        print(f"| {name} | {r['fp32']:,.0f} | {r['bf16']:,.0f} | {r['bf16'] / r['fp32']:.2f} |",
              flush=True)


def transformer(args) -> None:
    shapes = {
        "nanoGPT CPU shape: 4 layers, width 128, context 64, batch 12": dict(
            hidden_size=128, num_layers=4, num_heads=4, context_length=64, batch_size=12),
        "nanoGPT GPU shape: 6 layers, width 384, context 256, batch 8": dict(
            hidden_size=384, num_layers=6, num_heads=6, context_length=256, batch_size=8),
    }
    print(f"`python bench/bench_train.py transformer --steps {args.steps} --repeats "
          f"{args.repeats}` (tinyshakespeare, CPU, dropout 0; load average {_load()}):\n")
    print("| shape | fp32 tokens/s | bf16 tokens/s | compile fp32 tokens/s | "
          "nanoGPT reference (fp32 / bf16) |")
    print("|---|---:|---:|---:|---|")
    refs = ["about 20,700 / slower", "about 3,000 / about 6,200"]
    for (name, kw), ref in zip(shapes.items(), refs, strict=True):
        kw = dict(kw, kind="transformer", dropout=0.0)
        variants = {p: dict(kw, precision=p) for p in args.precisions}
        if args.compile:
            variants["compile"] = dict(kw, precision="fp32", compile=True)
        r = _compare(variants, args.steps, args.repeats)
        cell = {k: f"{v:,.0f}" for k, v in r.items()}
        print(f"| {name} | {cell.get('fp32', '-')} | {cell.get('bf16', '-')} | "
              f"{cell.get('compile', '-')} | {ref} |", flush=True)


# --------------------------------------------------------------------------- nanoGPT, side by side
def _nanogpt_rate(shape: dict, steps: int, ids, vocab: int) -> float:
    """Training tokens/s of a nanoGPT-style model and loop (written here after nanoGPT's model.py
    and train.py with its shakespeare_char settings: pre-norm blocks without biases, one fused
    q/k/v projection, SDPA with is_causal, GELU MLP, tied output layer, AdamW (fused where torch
    has it), clip 1.0, random windows) at `shape`; fp32, dropout 0, evaluation excluded. Median
    tokens/s over 5-step windows, like _throughput."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    D, L, nh, C, B = (shape[k] for k in ("hidden_size", "num_layers", "num_heads",
                                          "context_length", "batch_size"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(D, bias=False), nn.LayerNorm(D, bias=False)
            self.c_attn, self.c_proj = nn.Linear(D, 3 * D, bias=False), nn.Linear(D, D, bias=False)
            self.c_fc, self.mlp_proj = nn.Linear(D, 4 * D, bias=False), nn.Linear(4 * D, D, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
            q, k, v = (z.view(b, t, nh, D // nh).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, D))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, D), nn.Embedding(C, D)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D, bias=False)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for blk in self.blocks:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.view(-1, vocab), targets.view(-1))

    torch.manual_seed(1337)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    return _timed_loop(model, model, opt, ids, B, C, steps)


def _timed_loop(model, loss_of, opt, ids, B: int, C: int, steps: int) -> float:
    """nanoGPT's train.py loop (random windows, clip 1.0, optimizer step) for `steps` steps,
    `loss_of(x, y)` giving the loss; median tokens/s over 5-step windows, the first left out."""
    import torch

    data = torch.from_numpy(ids.astype("int64"))
    rates, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        ix = torch.randint(len(data) - C, (B,))
        x = torch.stack([data[i : i + C] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + C] for i in ix])
        loss = loss_of(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step % 5 == 0:
            t = time.perf_counter()
            if step > 5:  # the first window holds the warm-up
                rates.append(5 * B * C / (t - t0))
            t0 = t
    return statistics.median(rates)


def _nanogpt_own_rate(repo: Path, shape: dict, steps: int, ids, vocab: int,
                     precision: str) -> float:
    """Training tokens/s of nanoGPT's own model (`repo`/model.py, imported from there, never
    copied) in train.py's loop: its configure_optimizers (fused AdamW), the forward under
    torch.autocast(bfloat16) as train.py runs it on a GPU (`precision` bf16), clipping 1.0,
    random windows; dropout 0, evaluation excluded. Median over 5-step windows."""
    import contextlib
    import importlib.util
    import io

    import torch

    spec = importlib.util.spec_from_file_location("nanogpt_model", repo / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    D, L, nh, C, B = (shape[k] for k in ("hidden_size", "num_layers", "num_heads",
                                          "context_length", "batch_size"))
    torch.manual_seed(1337)
    with contextlib.redirect_stdout(io.StringIO()):  # (it prints its parameter count)
        model = mod.GPT(mod.GPTConfig(block_size=C, vocab_size=vocab, n_layer=L, n_head=nh,
                                      n_embd=D, dropout=0.0, bias=False))
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
           else contextlib.nullcontext())

    def loss_of(x, y):
        with ctx:
            return model(x, y)[1]

    return _timed_loop(model, loss_of, opt, ids, B, C, steps)


def nanogpt(args) -> None:
    """seqgen's transformer and nanoGPT at nanoGPT's two shapes, interleaved: nanoGPT's own
    model.py with --nanogpt REPO (at each of --precisions), else a loop written after it."""
    import torch

    from seqgen.data import load_corpus, prepare_data

    if THREADS:
        torch.set_num_threads(THREADS)
    data = prepare_data(load_corpus(str(SHAKESPEARE)))
    shapes = {
        "CPU shape: 4 layers, width 128, 4 heads, context 64, batch 12": dict(
            hidden_size=128, num_layers=4, num_heads=4, context_length=64, batch_size=12),
        "GPU shape: 6 layers, width 384, 6 heads, context 256, batch 8": dict(
            hidden_size=384, num_layers=6, num_heads=6, context_length=256, batch_size=8),
    }
    shapes = {k: v for k, v in shapes.items() if k.split(" shape")[0].lower() in args.shapes}
    precisions = args.precisions if args.nanogpt else ["fp32"]
    print(f"`python bench/bench_train.py nanogpt --steps {args.steps} --repeats {args.repeats} "
          f"--shapes {' '.join(args.shapes)}"
          + (f" --nanogpt {args.nanogpt} --precisions {' '.join(precisions)}" if args.nanogpt
             else "") + f"` (tinyshakespeare, CPU, dropout 0, {torch.get_num_threads()} "
          f"threads; medians of {args.repeats} interleaved runs; load average {_load()}):\n")
    who = "nanoGPT's model.py" if args.nanogpt else "nanoGPT-style loop"
    print(f"| shape | precision | {who} tokens/s | seqgen tokens/s | seqgen / nanoGPT |")
    print("|---|---|---:|---:|---:|")
    ids, vocab = data.train_ids, data.tokenizer.vocab_size
    for name, shape in shapes.items():
        for p in precisions:
            ours, theirs = [], []
            for _ in range(args.repeats):
                theirs.append(_nanogpt_own_rate(args.nanogpt, shape, args.steps, ids, vocab, p)
                              if args.nanogpt else _nanogpt_rate(shape, args.steps, ids, vocab))
                ours.append(_throughput(dict(shape, kind="transformer", dropout=0.0, precision=p,
                                             seq_len=shape["context_length"]), args.steps))
            a, b = statistics.median(theirs), statistics.median(ours)
            print(f"| {name} | {p} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |", flush=True)


def memory(args) -> None:
    """Peak RSS of `seqgen train` on a generated file of `--mb` megabytes (a few steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.txt"
        text = SHAKESPEARE.read_text()
        with open(big, "w") as f:
            written = 0
            while written < args.mb * 1_000_000:
                f.write(text)
                written += len(text)
        cmd = [sys.executable, "-m", "seqgen", "-q", "train", str(big), "--steps", "20",
               "--eval-every", "1000", "--out", str(Path(tmp) / "run"), "--no-plot"]
        env = dict(os.environ, SEQGEN_CACHE_DIR=str(Path(tmp) / "cache"))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB
    print(f"`seqgen train big.txt --steps 20` on a {written:,}"
          f"-character file: peak RSS {rss:,.0f} MiB, {wall:.0f} s wall (target < 1,536 MiB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scenario", choices=["shakespeare", "irish", "folk", "presets", "batching",
                                        "precision", "transformer", "nanogpt", "memory"])
    p.add_argument("--minutes", type=float, default=None, help="training budget per run")
    p.add_argument("--steps", type=int, default=40, help="steps per throughput run")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians)")
    p.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    p.add_argument("--nanogpt", type=Path, help="nanogpt: a nanoGPT checkout (its model.py is "
                   "imported from there)")
    p.add_argument("--baseline", type=Path, help="folk: the seqgen source tree to compare with")
    p.add_argument("--variants", nargs="*", help="presets: presets, option strings or 'floor' "
                   "(bench/floor_lstm.py) to compare")
    p.add_argument("--compile", action="store_true", help="transformer: also time torch.compile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                   help="transformer: which precisions to time")
    p.add_argument("--shapes", nargs="+", default=["cpu", "gpu"], choices=["cpu", "gpu"],
                   help="nanogpt: which of nanoGPT's shapes to time")
    p.add_argument("--mb", type=int, default=100, help="memory: corpus size in MB")
    p.add_argument("--extra", default="", help="more seqgen train options, e.g. '--model gru'")
    args = p.parse_args()
    args.extra = shlex.split(args.extra)
    if args.threads:
        global THREADS
        THREADS = args.threads
        args.extra += ["--threads", str(args.threads)]
    if args.minutes is None:
        args.minutes = {"irish": 5.0, "folk": 2.0, "batching": 1.0}.get(args.scenario, 1.5)
    globals()[args.scenario](args)


if __name__ == "__main__":
    main()
