"""Crash harness: SIGKILL a real `seqgen train` again and again and check that nothing is lost.

    python bench/crash_harness.py                          # 20 kills, about a minute
    python bench/crash_harness.py --kills 100 --steps 400  # a longer run
    python bench/crash_harness.py --exec                   # every start a fresh `python -m seqgen`
    python bench/crash_harness.py --json report.json       # the figures, for docs/reliability.md

One training run (a tiny LSTM that validates and saves a checkpoint at every step, so that writes
are frequent) is started, killed with SIGKILL at a random moment, restarted with `--resume`, killed
again, and so on. A third of the kills wait for a checkpoint file to be half written (a temporary
file in the run directory) and land inside the write; the others land at a random time after the
run made progress, or blindly during start-up. After every kill the harness checks:

  * the latest checkpoint loads (`load_checkpoint`), and so does `best/`;
  * its training state loads (`load_train_state`, what `--resume` reads);
  * its step never goes back (a kill costs at most the steps since the last save);
  * the next `--resume` starts and makes progress (a stale lock from the killed run is taken over).

Then SIGTERM and SIGINT must each save and exit with code 130, a last `--resume` runs to the end,
and its weights are compared with those of an uninterrupted run of the same command (run at the
same time as a separate `python -m seqgen` process). docs/training.md promises an exact resume on
CPU, so the stated tolerance is 0 (bit-identical); the report gives the largest difference found.

Starting Python and importing torch takes seconds on the shared 2-core machine, so by default the
restarts are forked from this process after it imported seqgen and torch: each child runs exactly
`seqgen.cli.app.main()` with the command line below, as `python -m seqgen` would, in its own
process that SIGKILL ends. `--exec` starts every child as a fresh `python -m seqgen` instead.

Exit status 0 when every check passed, 1 otherwise. The test suite runs it with --kills 20
(tests/test_reliability_crash.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

TRAIN_ARGS = ["--model", "lstm", "--preset", "tiny", "--hidden-size", "24", "--embed-dim", "8",
              "--batch-size", "4", "--seq-len", "16", "--eval-every", "1", "--eval-tokens", "256",
              "--warmup-steps", "2", "--device", "cpu", "--threads", "1", "--no-plot",
              "--dropout", "0.1"]
TOLERANCE = 0.0  # largest allowed |w_resumed - w_straight| (docs/training.md: exact on CPU)


def make_corpus(path: Path) -> Path:
    lines = [f"line {i % 23}: the sea, the stars and the wind {i % 7}.\n" for i in range(900)]
    path.write_text("".join(lines))
    return path


@dataclass
class Kill:
    n: int
    how: str  # "in-write" (a temporary file existed), "after-progress", "blind"
    after_s: float  # seconds since the child started
    saved_step: int | None  # step of the checkpoint left behind
    during_write: bool  # the kill interrupted a checkpoint save of this child
    ok: bool
    error: str = ""
    left: str = ""  # what the interrupted save left: "temp file", "committed, not renamed", ...


@dataclass
class Report:
    command: str
    mode: str
    steps: int
    kills: list[Kill] = field(default_factory=list)
    signals: dict = field(default_factory=dict)  # "SIGTERM"/"SIGINT" -> {"exit": 130, "step": n}
    final_exit: int | None = None
    final_step: int | None = None
    max_abs_diff: float | None = None
    tolerance: float = TOLERANCE
    resumes: int = 0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.errors and all(k.ok for k in self.kills) and self.final_exit == 0
                and self.max_abs_diff is not None and self.max_abs_diff <= self.tolerance
                and all(s.get("exit") == 130 for s in self.signals.values()))

    def summary(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["kills_total"] = len(self.kills)
        d["kills_survived"] = sum(k.ok for k in self.kills)
        d["kills_during_write"] = sum(k.during_write for k in self.kills)
        d["kills_by_how"] = {h: sum(k.how == h for k in self.kills)
                             for h in ("in-write", "after-progress", "blind")}
        d["saves_cut_short"] = {x: sum(k.left == x for k in self.kills)
                                for x in sorted({k.left for k in self.kills} - {""})}
        return d


# --------------------------------------------------------------------------------- children
class Child:
    """One `seqgen train` process: forked from this one (default) or a fresh interpreter."""

    def __init__(self, args: list[str], log: Path, exec_mode: bool):
        self.t0 = time.monotonic()
        self.code: int | None = None
        sys.stdout.flush()
        sys.stderr.flush()
        if exec_mode:
            with open(log, "wb") as f:
                self.popen = subprocess.Popen([sys.executable, "-m", "seqgen", *args], stdout=f,
                                              stderr=subprocess.STDOUT)
            self.pid = self.popen.pid
            return
        self.popen = None
        pid = os.fork()
        if pid == 0:  # the child: run the CLI exactly as `python -m seqgen ARGS` does
            code = 1
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                sys.argv = ["seqgen", *args]
                from seqgen.cli.app import main

                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 99
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pid = pid

    def poll(self) -> int | None:
        if self.code is None:
            if self.popen is not None:
                self.code = self.popen.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
                raise TimeoutError(f"child {self.pid} did not finish in {timeout:.0f} s")
            time.sleep(0.01)
        return self.code

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    @property
    def age(self) -> float:
        return time.monotonic() - self.t0


# --------------------------------------------------------------------------------- checks
def saved_step(run: Path) -> int | None:
    try:
        return json.loads((run / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def temp_files(run: Path) -> list[Path]:
    return [p for d in (run, run / "best") if d.is_dir() for p in d.iterdir()
            if p.name.startswith(".") and p.name.endswith(".tmp")]


def snapshot(run: Path) -> dict[str, int]:
    """{relative path: mtime_ns} of the run directory's files (the lock file aside)."""
    if not run.is_dir():
        return {}
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("*")
            if p.is_file() and p.name != ".seqgen.lock"}


def interrupted_save(run: Path, before: dict[str, int]) -> str:
    """What a save cut short by the kill left in the run directory ("" when the kill did not
    interrupt a save of this child): a temporary file (killed inside a file write), pending files
    that checkpoint.json already describes (killed after the commit, before the renames), pending
    files it does not (killed before the commit), or files newer than their checkpoint.json."""
    from seqgen import checkpoint as ck

    now = snapshot(run)
    if now == before:
        return ""
    if temp_files(run):
        return "temp file"
    for d in (run, run / "best"):
        pending = [n for n in ck.FILES if ck._pending(d, n).exists()]
        if pending:
            try:
                files = json.loads((d / ck.META).read_text())["files"]
            except (OSError, ValueError, KeyError):
                files = {}
            committed = any(ck._matches(ck._pending(d, n), files.get(n)) for n in pending)
            return "committed, not renamed" if committed else "pending, not committed"
    for d in (run, run / "best"):
        meta = d / "checkpoint.json"
        if meta.exists():
            t = meta.stat().st_mtime_ns
            if any(p.is_file() and p.name != ".seqgen.lock" and p.stat().st_mtime_ns > t
                   for p in d.iterdir()):
                return "files newer than checkpoint.json"
    return ""


def check_run(run: Path, last_step: int | None) -> tuple[int | None, str]:
    """(the saved step, "" or what is wrong) for the run directory left by a kill."""
    from seqgen.checkpoint import load_checkpoint, load_train_state
    from seqgen.errors import SeqgenError

    if not (run / "checkpoint.json").exists():
        if last_step is not None:
            return None, f"checkpoint.json vanished (last saved step {last_step})"
        return None, ""
    try:
        ckpt = load_checkpoint(run)
        load_train_state(run)
        if (run / "best" / "checkpoint.json").exists():
            load_checkpoint(run / "best")
    except SeqgenError as e:
        return None, f"{type(e).__name__}: {e}"
    if last_step is not None and ckpt.step < last_step:
        return ckpt.step, f"step went back from {last_step} to {ckpt.step}"
    return ckpt.step, ""


def wait_for(cond, child: Child, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if child.poll() is not None:
            return False
        time.sleep(poll)
    return False


# --------------------------------------------------------------------------------- the run
def _warm_up() -> None:
    """Import what a training child imports lazily (AdamW pulls in torch._dynamo: seconds), so
    that forked children start in a fraction of a second."""
    import torch

    import seqgen.checkpoint
    import seqgen.cli.app
    import seqgen.data
    import seqgen.models
    import seqgen.train  # noqa: F401

    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1e-3)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    p.sum().backward()
    opt.step()


def run_harness(kills: int = 20, steps: int = 150, seed: int = 0, workdir: Path | None = None,
                exec_mode: bool = False, log=print) -> Report:
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(1)  # no OpenMP thread pool in the parent: forking stays safe
    _warm_up()
    t_start = time.monotonic()
    rng = random.Random(seed)
    work = Path(workdir or tempfile.mkdtemp(prefix="seqgen-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(work / "corpus.txt")
    run, base, logs = work / "run", work / "straight", work / "logs"
    logs.mkdir(exist_ok=True)
    common = ["-q", "train", str(corpus), *TRAIN_ARGS, "--steps", str(steps)]
    fresh = [*common, "--out", str(run)]
    resume = ["-q", "train", "--resume", str(run)]
    report = Report(command="seqgen " + shlex.join(fresh), steps=steps,
                    mode="exec (python -m seqgen)" if exec_mode else "fork (seqgen.cli.app.main)")

    # The uninterrupted run: a separate `python -m seqgen` process, meanwhile.
    with open(logs / "straight.log", "wb") as f:
        straight = subprocess.Popen([sys.executable, "-m", "seqgen", *common, "--out", str(base)],
                                    stdout=f, stderr=subprocess.STDOUT)

    last_step: int | None = None
    step_time = 0.2  # seconds per step (with its save), learnt as the run goes
    n = 0
    while n < kills:
        args = resume if last_step is not None else fresh
        report.resumes += args is resume
        child = Child(args, logs / f"kill{n}.log", exec_mode)
        how = rng.choices(["in-write", "after-progress", "blind"], [4, 4, 2])[0]
        before = saved_step(run)
        files_before = snapshot(run)
        if how == "in-write":
            # wait for progress, then for a temporary checkpoint file: kill inside the write
            wait_for(lambda b=before: saved_step(run) != b, child, 120)
            hit = wait_for(lambda: bool(temp_files(run)), child, 30, poll=0.0002)
            if not hit:
                how = "after-progress"
        elif how == "after-progress":
            t = time.monotonic()
            if wait_for(lambda b=before: saved_step(run) != b, child, 120):
                time.sleep(rng.uniform(0, 1.5 * step_time))
            step_time = 0.7 * step_time + 0.3 * min(2.0, (time.monotonic() - t) / 2)
        else:
            time.sleep(rng.uniform(0, 3.0 if exec_mode else 1.0))
        if child.poll() is not None:  # finished or failed before the kill
            report.errors.append(f"kill {n}: the child exited with {child.code} before the kill "
                                 f"(see {logs / f'kill{n}.log'}); use more --steps")
            break
        after = child.age
        child.signal(signal.SIGKILL)
        child.wait()
        left = interrupted_save(run, files_before)
        step, err = check_run(run, last_step)
        if not err and step is not None:
            last_step = step
        report.kills.append(Kill(n, how, round(after, 3), step, bool(left), not err, err, left))
        log(f"kill {n:3d} {how:15s} at {after:6.2f}s  step {step}  "
            f"{('save cut short: ' + left) if left else ''} {('FAIL ' + err) if err else 'ok'}")
        n += 1
        if err:
            break

    # SIGTERM and SIGINT: the current step finishes, a checkpoint is saved, exit 130.
    if not report.errors and all(k.ok for k in report.kills):
        for sig in (signal.SIGTERM, signal.SIGINT):
            child = Child(resume if last_step is not None else fresh,
                          logs / f"{sig.name}.log", exec_mode)
            report.resumes += last_step is not None
            b = saved_step(run)
            wait_for(lambda b=b: saved_step(run) != b, child, 120)
            child.signal(sig)
            code = child.wait()
            step, err = check_run(run, last_step)
            report.signals[sig.name] = {"exit": code, "step": step, "error": err}
            if err:
                report.errors.append(f"{sig.name}: {err}")
            else:
                last_step = step
            log(f"{sig.name}: exit {code}, step {step} {err or 'ok'}")

        # the last resume runs to the end
        child = Child(resume, logs / "final.log", exec_mode)
        report.resumes += 1
        report.final_exit = child.wait(600)
        report.final_step = saved_step(run)
        if report.final_exit != 0:
            report.errors.append(f"the final --resume exited with {report.final_exit} (see "
                                 f"{logs / 'final.log'})")

    code = straight.wait(600)
    if code != 0:
        report.errors.append(f"the uninterrupted run exited with {code} (see "
                             f"{logs / 'straight.log'})")
    elif report.final_exit == 0:
        a, b = load_file(str(base / "model.safetensors")), load_file(str(run / "model.safetensors"))
        if set(a) != set(b):
            report.errors.append("the resumed and uninterrupted weights have different tensors")
        else:
            report.max_abs_diff = max(float((a[k] - b[k]).abs().max()) for k in a)
            log(f"final step {report.final_step}: largest |difference| from the uninterrupted "
                f"run {report.max_abs_diff:g} (tolerance {TOLERANCE:g})")
    report.wall_s = round(time.monotonic() - t_start, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to send (default 20)")
    p.add_argument("--steps", type=int, default=150, help="training steps of the run")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    p.add_argument("--workdir", type=Path, help="where to put the runs (default: a temp dir)")
    p.add_argument("--exec", action="store_true", help="start every child as python -m seqgen")
    p.add_argument("--json", type=Path, help="write the report here")
    a = p.parse_args(argv)
    report = run_harness(a.kills, a.steps, a.seed, a.workdir, a.exec)
    s = report.summary()
    print(f"\ncommand: python bench/crash_harness.py {shlex.join(argv or sys.argv[1:])}")
    print(f"run: {report.command}  ({report.mode})")
    print(f"kills survived: {s['kills_survived']}/{s['kills_total']} "
          f"({s['kills_during_write']} during a checkpoint save: {s['saves_cut_short']}; "
          f"{s['kills_by_how']}), "
          f"resumes {report.resumes}, signals {report.signals}, final exit {report.final_exit}, "
          f"max |diff| {report.max_abs_diff}, {report.wall_s} s")
    for e in report.errors:
        print("ERROR:", e)
    if a.json:
        a.json.write_text(json.dumps(s, indent=1) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
