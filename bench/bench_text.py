"""Quality of text per time budget: `seqgen train` against nanoGPT's baby configuration, at equal
wall time, in one run.

    python bench/bench_text.py compare --corpus ../shared/data/tinyshakespeare.txt \\
        --nanogpt /work/.mirror/karpathy+nanoGPT/repo --minutes 1.5 --threads 1
    python bench/bench_text.py readings checkpoints/tinyshakespeare --corpus ...

`compare`, one after the other, each with the same number of torch threads:
1. `seqgen train CORPUS --minutes M` (the auto preset: what a new user gets);
2. nanoGPT's own train.py, from a temporary checkout of the repository given (a git directory or
   a checkout; nothing of it is copied into this repository), with its README's CPU command
   (the "baby" configuration shrunk for a CPU: 4 layers, 4 heads, width 128, context 64, batch
   12, dropout 0, eval_iters 20). The README trains 2,000 iterations; here the iterations (and
   lr_decay_iters with them) are as many as fit M minutes at the time per iteration a 30-iteration
   run measures first, so that both train for the same wall time, evaluation included;
3. seqgen's transformer at that same baby shape (`--model transformer --num-layers 4
   --num-heads 4 --hidden-size 128 --context-length 64 --seq-len 64 --batch-size 12 --dropout
   0`), --minutes M.
Every model is then scored by the same code, seqgen's `held_out_loss` (the transformers over
non-overlapping 64-character windows, as nanoGPT estimates its own; the LSTM carrying its state
along the split), on the same held-out text: the last 10% by position, as both split it (nanoGPT's
own estimate, 20 random batches, is shown beside it). Then each writes a 300-character sample at
temperature 0.8, seed 1337, from its tool's own start: `seqgen sample RUN/best` with no prompt
(read after the text's paragraph break), nanoGPT's sample.py with its default start "\\n" (top-k
200, which keeps all 65 characters). Prints a markdown table and the samples.

nanoGPT needs numpy and requests (prepare.py), and tiktoken only for GPT-2 encodings, which
sample.py imports anyway: when tiktoken is missing an empty stand-in module is put on its path.

`readings CKPT` (a model trained on the one text CORPUS): what each way of reading a prompt
costs it, the one `seqgen sample` uses against <eos> first (before issue 23), the prompt alone
and a single line break (docs/sampling.md, "How a prompt is read").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BABY = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
        "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
        "--dropout=0.0"]  # nanoGPT README, "I only have a macbook" (its max_iters set below)
EVAL_INTERVAL = 250  # config/train_shakespeare_char.py


def run(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, str]:
    """Run `cmd`; (wall seconds, stdout). Its stderr goes to `log`."""
    t0 = time.perf_counter()
    with open(log, "w") as err:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {p.returncode}); see {log}")
    return time.perf_counter() - t0, p.stdout


# ----------------------------------------------------------------------------------- seqgen
def seqgen_run(name: str, corpus: Path, minutes: float, threads: int, work: Path,
               extra: list[str]) -> dict:
    slug = "run-baby" if extra else "run-auto"  # (not "seqgen": python -m would import it)
    out = work / slug
    env = {**os.environ, "SEQGEN_CACHE_DIR": str(work / "cache")}
    wall, _ = run([sys.executable, "-m", "seqgen", "train", str(corpus), "--minutes", str(minutes),
                   "--threads", str(threads), "--out", str(out), *extra], work, env,
                  work / f"{slug}.log")
    meta = json.loads((out / "best" / "checkpoint.json").read_text())
    last = json.loads((out / "checkpoint.json").read_text())["metrics"]
    _, sample = run([sys.executable, "-m", "seqgen", "sample", str(out / "best"), "--length", "300",
                     "--temperature", "0.8", "--seed", "1337", "--threads", str(threads)],
                    work, env, work / f"{slug}-sample.log")
    return {"name": name, "model": meta["summary"], "steps": last["step"],
            "train_s": last["time_s"], "wall_s": wall, "tokens_per_s": last.get("tokens_per_s"),
            "val": meta["metrics"]["val_loss"], "own_val": None, "sample": sample.rstrip("\n")}


# ----------------------------------------------------------------------------------- nanoGPT
def checkout(repo: Path, work: Path) -> Path:
    """A temporary checkout of nanoGPT: `git archive` of a git directory, or a copy."""
    dest = work / "nanoGPT"
    if (repo / "train.py").is_file():
        shutil.copytree(repo, dest, ignore=shutil.ignore_patterns(".git"))
        return dest
    dest.mkdir()
    archive = subprocess.run(["git", f"--git-dir={repo}", "archive", "HEAD"], check=True,
                             stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def nanogpt_env(work: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if importlib.util.find_spec("tiktoken") is None:
        stub = work / "stubs"
        stub.mkdir(exist_ok=True)
        (stub / "tiktoken.py").write_text('"""Stand-in: only GPT-2 encodings use tiktoken."""\n')
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub), env.get("PYTHONPATH")]))
    return env


def iter_times(stdout: str) -> list[float]:
    """Milliseconds per iteration from train.py's `iter N: loss L, time T ms` lines (iter 0, which
    includes the first evaluation, left out)."""
    return [float(t) for i, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", stdout)
            if int(i) > 0]


def nanogpt_run(repo: Path, corpus: Path, minutes: float, threads: int, work: Path) -> dict:
    src = checkout(repo, work)
    data = src / "data" / "shakespeare_char"
    shutil.copyfile(corpus, data / "input.txt")  # prepare.py downloads it only when missing
    env = nanogpt_env(work, threads)
    run([sys.executable, "prepare.py"], data, env, work / "nanogpt-prepare.log")
    cfg = "config/train_shakespeare_char.py"
    _, probe = run([sys.executable, "train.py", cfg, *BABY, "--max_iters=30",
                    "--lr_decay_iters=30", "--eval_iters=1", "--out_dir=probe"], src, env,
                   work / "nanogpt-probe.log")
    ms = statistics.median(iter_times(probe)[5:])
    budget = minutes * 60
    # evaluation: 2 splits x 20 batches, forward only (about a third of a step), every 250 iters
    per_iter = ms / 1000 * (1 + 2 * 20 / 3 / EVAL_INTERVAL)
    iters = max(EVAL_INTERVAL, int(budget / per_iter) // EVAL_INTERVAL * EVAL_INTERVAL)
    wall, out = run([sys.executable, "train.py", cfg, *BABY, f"--max_iters={iters}",
                     f"--lr_decay_iters={iters}"], src, env, work / "nanogpt-train.log")
    evals = re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", out)
    own_best = min(float(v) for _, v in evals)
    times = iter_times(out)
    _, sample = run([sys.executable, "sample.py", "--out_dir=out-shakespeare-char",
                     "--device=cpu", "--num_samples=1", "--max_new_tokens=300"], src, env,
                    work / "nanogpt-sample.log")
    sample = sample.split("---------------")[0]
    sample = sample[sample.index("\n", sample.rindex("Loading meta")) + 1:] if "Loading meta" \
        in sample else sample
    return {"name": "nanoGPT", "model": "GPT 4x128, 4 heads, context 64 (nanoGPT's train.py)",
            "steps": iters, "train_s": sum(times) / 1000, "wall_s": wall,
            "tokens_per_s": 12 * 64 / (statistics.median(times) / 1000),
            "val": rescore(src, threads), "own_val": own_best, "sample": sample.strip("\n"),
            "probe_ms": ms}


def rescore(src: Path, threads: int) -> float:
    """The held-out loss of nanoGPT's best checkpoint by seqgen's evaluation code, on val.bin
    (the last 10% of the text, by position)."""
    import numpy as np
    import torch

    from seqgen.train import held_out_loss

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("nanogpt_model", src / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = src / "out-shakespeare-char" / "ckpt.pt"  # nanoGPT's own checkpoint, tensors only
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    with contextlib.redirect_stdout(sys.stderr):  # (it prints its parameter count)
        gpt = mod.GPT(mod.GPTConfig(**ckpt["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    gpt.load_state_dict(state)

    class Scored(torch.nn.Module):  # seqgen's interface: logits, state = model(ids, state)
        def __init__(self):
            super().__init__()
            self.gpt = gpt

        def forward(self, ids, state=None):
            ids = ids.contiguous()
            logits, _ = self.gpt(ids, targets=ids)  # with targets: logits at every position
            return logits, None

    val = np.fromfile(src / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16)
    loss, _ = held_out_loss(Scored(), val.astype(np.int64), recurrent=False, seq_len=64,
                            batch_size=64)
    return loss


# ----------------------------------------------------------------------------------- readings
def readings(ckpt_path: Path, corpus: Path, cases: int, threads: int) -> str:
    """How much each way of reading a prompt costs a one-text model: the loss of the 32 held-out
    characters after a prompt, minus their loss after 300 characters of the real text before
    the prompt, averaged over `cases` prompts of each start (a paragraph: after a blank line; a
    line; a word) cut 0-60 characters in; and how often the model writes a line break after the
    60 most common speaker names of the text (as the text always does)."""
    import random
    from collections import Counter

    import torch

    from seqgen.checkpoint import load_checkpoint
    from seqgen.sampling import encode_prompt
    from seqgen.tokenizer import EOS_ID

    torch.set_num_threads(threads)
    ck = load_checkpoint(ckpt_path)
    tok, model, C = ck.tokenizer, ck.model, ck.model_config.context_length
    window = ck.model_config.kind == "transformer"
    text = corpus.read_text("utf-8")
    val = text[len(text) - round(len(text) * 0.1):]
    ways = {"<eos> first (before issue 23)": lambda p: [EOS_ID] + tok.encode(p),
            "the prompt alone": lambda p: tok.encode(p) or tok.encode("\n"),
            "after \"\\n\"": lambda p: tok.encode("\n" + p),
            f"after {ck.context!r} (seqgen now)": lambda p: encode_prompt(tok, p,
                                                                         context=ck.context)}
    K = 32

    def nll(ids: list[int]) -> torch.Tensor:  # -log p of the last K ids
        ids = ids[-(C + 1):] if window else ids
        with torch.inference_mode():
            logits, _ = model(torch.tensor([ids[:-1]]), None)
        return torch.nn.functional.cross_entropy(logits[0, -K:].float(), torch.tensor(ids[-K:]),
                                                 reduction="none")

    starts = {"paragraph": [i + 2 for i in range(300, len(val) - 200) if val[i:i + 2] == "\n\n"],
              "line": [i + 1 for i in range(300, len(val) - 200)
                       if val[i] == "\n" and val[i + 1] != "\n"],
              "word": [i + 1 for i in range(300, len(val) - 200) if val[i] == " "]}
    rng = random.Random(0)
    gaps = {w: {} for w in ways}
    for where, options in starts.items():
        sums = {w: torch.zeros(K) for w in ways}
        for _ in range(cases):
            s = rng.choice(options)
            c = s + rng.randint(0, 60)
            cont = tok.encode(val[c:c + K])
            ref = nll(tok.encode(val[s - 300:c]) + cont)
            for w, read in ways.items():
                sums[w] += nll(read(val[s:c]) + cont) - ref
        for w in ways:
            g = sums[w] / cases
            gaps[w][where] = f"{g.mean():+.3f} ({g[0]:+.2f})"
    names = [n for n, _ in Counter(re.findall(r"\n\n([A-Za-z ]+:)\n", text)).most_common(60)]
    nl = tok.stoi["\n"]
    rows = ["| read as | paragraph start | line start | word start | speaker names without a "
            "line break after them (greedy) |", "|---|---:|---:|---:|---:|"]
    for w, read in ways.items():
        missed = 0
        for n in names:
            with torch.inference_mode():
                logits, _ = model(torch.tensor([read(n)[-C:] if window else read(n)]), None)
            missed += int(logits[0, -1].argmax()) != nl
        rows.append(f"| {w} | {gaps[w]['paragraph']} | {gaps[w]['line']} | {gaps[w]['word']} | "
                    f"{missed} of {len(names)} |")
    return (f"{ckpt_path}: {ck.meta.get('summary')}, step {ck.step}; nats/char over the "
            f"{K} characters after the prompt, against the same characters after 300 characters "
            f"of real text (first character in brackets), {cases} prompts per start\n\n"
            + "\n".join(rows))


# ----------------------------------------------------------------------------------- report
def report(rows: list[dict], minutes: float, threads: int, load: str) -> str:
    lines = [f"load average at the start: {load}; {threads} torch thread(s) each; budget "
             f"{minutes:g} min", "",
             "| run | model | steps | training s | whole process s | tokens/s | held-out "
             "nats/char (seqgen's evaluation) | nanoGPT's own estimate |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        own = f"{r['own_val']:.4f}" if r["own_val"] is not None else ""
        lines.append(f"| {r['name']} | {r['model']} | {r['steps']:,} | {r['train_s']:.1f} | "
                     f"{r['wall_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['val']:.4f} | {own} |")
    for r in rows:
        lines += ["", f"{r['name']}, 300 characters:", "", "```", r["sample"], "```"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    cmp_ = sub.add_parser("compare", help="seqgen against nanoGPT at equal wall time")
    cmp_.add_argument("--nanogpt", type=Path, default=Path("/work/.mirror/karpathy+nanoGPT/repo"),
                      help="nanoGPT's git directory or a checkout of it")
    cmp_.add_argument("--minutes", type=float, default=1.5)
    cmp_.add_argument("--keep", type=Path, default=None, help="work here (kept) instead of a "
                      "temporary directory")
    rd = sub.add_parser("readings", help="what each way of reading a prompt costs a checkpoint")
    rd.add_argument("checkpoint", type=Path)
    rd.add_argument("--cases", type=int, default=300)
    for p in (cmp_, rd):
        p.add_argument("--corpus", type=Path, default=Path("../shared/data/tinyshakespeare.txt"))
        p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    corpus = a.corpus.resolve()
    if a.what == "readings":
        print(readings(a.checkpoint, corpus, a.cases, a.threads))
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory() as tmp:
        work = (a.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        rows = [seqgen_run("seqgen", corpus, a.minutes, a.threads, work, [])]
        print(f"seqgen: {rows[-1]['val']:.4f}", file=sys.stderr, flush=True)
        rows.append(nanogpt_run(a.nanogpt.resolve(), corpus, a.minutes, a.threads, work))
        print(f"nanoGPT: {rows[-1]['val']:.4f} ({rows[-1]['steps']} iterations at "
              f"{rows[-1]['probe_ms']:.1f} ms measured first)", file=sys.stderr, flush=True)
        rows.append(seqgen_run(
            "seqgen transformer, nanoGPT's baby shape", corpus, a.minutes, a.threads, work,
            ["--model", "transformer", "--num-layers", "4", "--num-heads", "4", "--hidden-size",
             "128", "--context-length", "64", "--seq-len", "64", "--batch-size", "12",
             "--dropout", "0"]))
        end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(report(rows, a.minutes, a.threads, load) + f"\n\nload average at the end: {end}")


if __name__ == "__main__":
    main()
