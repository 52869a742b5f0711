"""Sampling speed, side by side in one run: seqgen's decoders against a nanoGPT-style baseline.

    python bench/bench_sample.py                 # prints a Markdown table
    python bench/bench_sample.py --write         # also replaces the Sampling section of
                                                 # docs/benchmarks.md with it

Models (random weights: speed does not depend on training; <eos> does not stop a sample here):
- transformer: nanoGPT's CPU shakespeare_char size: 4 layers, width 128, 4 heads, context 64;
- LSTM: 2 layers of 512, embedding 64.
Vocabulary: the characters of ../shared/data/tinyshakespeare.txt when present (65), else 65
letters and signs. Every case generates --length characters; the cases run round-robin, --repeats
times, and the table gives medians (so machine noise hits every case alike).

Cases:
- nanoGPT generate(): the baseline, written here as nanoGPT writes it (crop the text to the
  context, run the whole window, softmax, torch.multinomial, torch.cat), on the same model;
- seqgen, model.forward: generate() through the model's forward with its KV cache / RNN state;
- seqgen: generate() with its fast decode step (what `seqgen sample` uses);
- --num-samples 16: the same, 16 streams in one batch (characters/s counts one stream);
- first character: `seqgen sample CKPT --length 1` as a new process, from start to its first
  byte on stdout, next to `python -c "import torch"` and `seqgen --help`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from seqgen.checkpoint import save_checkpoint
from seqgen.models import ModelConfig, build_model
from seqgen.sampling import SampleConfig, default_threads, generate
from seqgen.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def vocabulary() -> Tokenizer:
    if SHAKESPEARE.is_file():
        return Tokenizer.build([SHAKESPEARE.read_text(encoding="utf-8")])
    return Tokenizer(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \n.,;:!?'-&$3"))


@torch.no_grad()
def nanogpt_generate(model, idx, max_new_tokens, temperature=1.0, generator=None):
    """nanoGPT's model.generate(), verbatim in substance: no cache, the whole window every step."""
    block_size = model.config.context_length
    for _ in range(max_new_tokens):
        idx_cond = idx if idx.size(1) <= block_size else idx[:, -block_size:]
        logits, _ = model(idx_cond)
        logits = logits[:, -1, :] / temperature
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def seqgen_case(model, tok, length, num_samples=1, decoder="auto", threads=None):
    threads = threads or default_threads(num_samples)  # (its idle-core check is not timed)

    def run(n=length):
        torch.set_num_threads(threads)
        cfg = SampleConfig(length=n, num_samples=num_samples, stop_at_eos=False, decoder=decoder)
        generate(model, tok, "\n", cfg, torch.Generator().manual_seed(0))
    return run


def first_char_seconds(ckpt: Path) -> float:
    """Start `seqgen sample` and return the seconds until its first byte on stdout."""
    cmd = [sys.executable, "-m", "seqgen", "--quiet", "sample", str(ckpt), "--length", "1",
           "--seed", "1"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.read(1)
    t = time.perf_counter() - t0
    _, err = p.communicate()
    if p.returncode != 0 or not first:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()}")
    return t


def process_seconds(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=2000, help="characters per case")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every case (default: as seqgen sample chooses, 1)")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    tok = vocabulary()
    V = tok.vocab_size
    torch.manual_seed(0)
    tr = build_model(ModelConfig(kind="transformer", vocab_size=V, hidden_size=128, num_layers=4,
                                 num_heads=4, context_length=64)).eval()
    lstm = build_model(ModelConfig(kind="lstm", vocab_size=V, hidden_size=512, num_layers=2,
                                   embed_dim=64)).eval()
    N = args.length
    N_SLOW = min(N, 300)  # nn.LSTM called once per character is slow: fewer characters there
    start = torch.tensor([[tok.stoi["\n"]]])

    def baseline(n=N):
        torch.set_num_threads(args.threads or 1)
        nanogpt_generate(tr, start, n, generator=torch.Generator().manual_seed(0))

    cases = {
        "transformer: nanoGPT generate() (no cache, baseline)": baseline,
        "transformer: seqgen, model.forward + KV cache": seqgen_case(tr, tok, N, decoder="model"),
        "transformer: seqgen sample (fast decode step)": seqgen_case(tr, tok, N),
        "transformer: seqgen sample --num-samples 16": seqgen_case(tr, tok, N, 16),
        "LSTM 2x512: seqgen, model.forward (nn.LSTM per step)": seqgen_case(lstm, tok, N_SLOW,
                                                                           decoder="model"),
        "LSTM 2x512: seqgen sample (fast decode step)": seqgen_case(lstm, tok, N),
        "LSTM 2x512: seqgen sample --num-samples 16": seqgen_case(lstm, tok, N, 16),
    }
    for run in cases.values():  # warm-up: first-call allocations, oneDNN primitives
        run(80)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
            print(f"  {name}: {times[name][-1]:.3f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}

    with tempfile.TemporaryDirectory() as d:
        ckpt = save_checkpoint(Path(d) / "tr", tr, tok, {}, "bench", "text", 0)
        first = [first_char_seconds(ckpt) for _ in range(args.repeats)]
        imp = [process_seconds([sys.executable, "-c", "import torch"]) for _ in range(args.repeats)]
        hlp = [process_seconds([sys.executable, "-m", "seqgen", "--help"])
               for _ in range(args.repeats)]

    base = med["transformer: nanoGPT generate() (no cache, baseline)"]
    rows = []
    for name, t in med.items():
        rate = (N_SLOW if "nn.LSTM" in name else N) / t
        ratio = ""
        if name.startswith("transformer"):
            ratio = f"{base / t:.1f}x"
        rows.append(f"| {name} | {t:.3f} | {rate:,.0f} | {ratio} |")
    one_t = med["transformer: seqgen sample (fast decode step)"]
    one_l = med["LSTM 2x512: seqgen sample (fast decode step)"]
    b16_t = med["transformer: seqgen sample --num-samples 16"] / one_t
    b16_l = med["LSTM 2x512: seqgen sample --num-samples 16"] / one_l
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = f"python bench/bench_sample.py --length {N} --repeats {args.repeats}" + (
        f" --threads {args.threads}" if args.threads else "") + (" --write" if args.write else "")
    text = "\n".join([
        f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch "
        f"{torch.__version__}, threads {args.threads or 'as seqgen sample chooses'}, "
        f"{os.cpu_count()} CPUs, load average "
        f"{load:.1f} at the end). {N:,} characters per case, vocabulary {V}, medians of "
        f"{args.repeats} round-robin runs ({N_SLOW} characters for nn.LSTM per step); random "
        "weights, <eos> ignored.",
        "",
        "| case | seconds | characters/s (per stream) | vs nanoGPT |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"- `--num-samples 16` costs {b16_t:.2f}x one sample (transformer) and {b16_l:.2f}x "
        f"(LSTM) for 16x the text.",
        f"- First character of `seqgen sample CKPT --length 1` (new process, to its first byte on "
        f"stdout): {statistics.median(first):.2f} s; of that, `python -c \"import torch\"` alone "
        f"takes {statistics.median(imp):.2f} s; `seqgen --help`: {statistics.median(hlp):.2f} s.",
    ])
    print(text)
    if args.write:
        doc = ROOT / "docs" / "benchmarks.md"
        content = doc.read_text(encoding="utf-8")
        head, sep, rest = content.partition("## Sampling\n")
        if not sep:
            sys.exit("docs/benchmarks.md has no '## Sampling' section")
        _, nxt, tail = rest.partition("\n## ")
        section = "## Sampling\n\n" + text + "\n"
        doc.write_text(head + section + (("\n## " + tail) if nxt else ""), encoding="utf-8")
        print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
