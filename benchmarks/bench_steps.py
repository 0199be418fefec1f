"""Training-step benchmark: ember eager / ember compiled / PyTorch eager / torch.compile, each in its
own process, alternating, medians; plus the busy-machine benchmark.

Run:
    python benchmarks/bench_steps.py                          # everything; writes benchmarks/STEPS.md
    python benchmarks/bench_steps.py --only mnist_sgd,gpt --rounds 5 --steps 10
    python benchmarks/bench_steps.py --only busy              # quiet vs one CPU-bound peer process
    python benchmarks/bench_steps.py --no-torch-compile       # skip torch.compile (its compile takes minutes here)

Workloads (`--only` names):
    mnist_sgd    PyTorch's classic MNIST CNN, batch 64, nll_loss, SGD(lr 0.01, momentum 0.5)
    mnist_adam   the same with Adam(lr 1e-3)
    gpt          a 2-layer GPT (d 128, 4 heads, seq 64, batch 16, vocab 65), cross_entropy, AdamW(1e-3)
    busy         the MNIST SGD step, ember compiled and PyTorch eager, quiet vs with one CPU-bound
                 competing process (a Python busy loop this script starts and stops): slowdown
                 ratios and worst steps
One step = `opt.zero_grad(); loss = f(x, y); loss.backward(); opt.step()` (dropout on: train mode).

Why processes: PyTorch must be measured at its best, i.e. in a process of its own with its
default settings.  In a process that also runs numpy/ember work, its OpenMP workers either spin
and steal the cores from the other variant, or (with OMP_WAIT_POLICY=PASSIVE, as the in-process
kernel table in bench_compile.py sets) sleep between ops and wake slowly: that measured PyTorch's
MNIST step 3-4x too slow on this machine.  So every variant here is a worker process, started
once and kept warm; PyTorch workers get the parent's environment minus OMP_*/MKL_* variables.  The
parent asks the workers in turn (order rotated each round) to run `--steps` timed steps; only one
worker runs at a time, the others block on a pipe (asleep), and a short gap between turns lets
spinning threads settle.  Reported: the median and quartiles of all timed steps, and the worst.

Correctness first: the ember compiled worker checks loss and every gradient against ember eager
(eval mode, so dropout is off, rtol 1e-3) before it times anything; a mismatch turns its cells
into "n/a: WRONG RESULT".
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from harness import NA, Stats, compare, fmt_ratio, loadavg, machine_info, markdown_table, wait_quiet  # noqa: E402

EAGER, COMPILED, TORCH, TCOMPILE = "ember eager", "ember compiled", "torch eager", "torch.compile"
VARIANTS = (EAGER, COMPILED, TORCH, TCOMPILE)
STEP_WORKLOADS = ("mnist_sgd", "mnist_adam", "gpt")
ALL = STEP_WORKLOADS + ("busy",)
# targets of issue 12 (throughput ratios vs PyTorch eager, measured as here)
TARGETS = {("mnist_sgd", COMPILED): 1.5, ("mnist_adam", COMPILED): 1.5, ("mnist_sgd", EAGER): 0.7,
           ("mnist_adam", EAGER): 0.7, ("gpt", COMPILED): 1.3}
BUSY_MAX_SLOWDOWN = 2.5
PROTO = "@@ "        # worker protocol lines on stdout start with this (libraries may print too)
BUSY_LOOP = "while True: pass"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================== worker process
def _reply(obj) -> None:
    sys.stdout.write(PROTO + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _build(kind: str, variant: str):
    """(step callable, notes) for one variant, in this (worker) process."""
    from bench_models import Workload, copy_params, loss_and_grads, make_step
    w = Workload(kind)
    notes = []
    if variant in (TORCH, TCOMPILE):
        import torch
        torch.manual_seed(0)
        model = w.make(torch)
        args = [torch.from_numpy(a) for a in w.inputs]
        loss = w.loss_fn(torch, model)
        if variant == TCOMPILE:
            model = torch.compile(model)
            loss = w.loss_fn(torch, model)
        notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        return make_step(w.optimizer(torch, model), loss, args), notes
    import ember as E
    E.manual_seed(0)
    model = w.make(E)
    args = [E.from_numpy(a) for a in w.inputs]
    if variant == EAGER:
        return make_step(w.optimizer(E, model), w.loss_fn(E, model), args), notes
    # compiled: check against eager (eval mode: dropout off) before timing anything
    ref_model = w.make(E)
    copy_params(ref_model, model, lambda p: p.detach(), E)
    check_loss, _ = w.compiled_loss_fn(E, model)
    model.eval()
    ref_model.eval()
    got = loss_and_grads(model, check_loss, args)
    ref = loss_and_grads(ref_model, w.loss_fn(E, ref_model), args)
    ok, msg = compare(got, ref, 1e-3, 1e-5)
    if not ok:
        raise AssertionError(f"WRONG RESULT vs ember eager: {msg}")
    notes.append(f"compiled vs eager (loss + {len(got) - 1} grads, eval mode): {msg}")
    model.train()
    # a fresh compile traced in train mode (dropout on), as a user's training loop would run
    loss, _ = w.compiled_loss_fn(E, model)
    from ember.runtime.cpu import num_threads
    notes.append(f"ember threads {num_threads()}")
    return make_step(w.optimizer(E, model), loss, args), notes


def worker(kind: str, variant: str, warmup: int) -> int:
    """Build the step, warm up, then serve `run N` (time N steps) / `quit` lines from stdin."""
    try:
        step, notes = _build(kind, variant)
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        _reply({"ready": True, "notes": notes, "warmup_s": time.perf_counter() - t0})
    except Exception as e:  # noqa: BLE001 - the parent turns this into an n/a cell
        _reply({"ready": False, "error": str(NA.from_exc("build failed", e))})
        return 1
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        n = int(cmd[1])
        gc.collect()
        times = []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            _reply({"times": times})
        except Exception as e:  # noqa: BLE001
            _reply({"error": str(NA.from_exc("step failed", e))})
    return 0


# ============================================================================== parent side
def _env(variant: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if variant in (TORCH, TCOMPILE):   # PyTorch at its defaults
        for k in list(env):
            if k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_")):
                del env[k]
    return env


class Worker:
    """A warm worker process for one (workload, variant)."""

    def __init__(self, kind: str, variant: str, warmup: int, timeout: float):
        self.kind, self.variant = kind, variant
        self.error: NA | None = None
        self.notes: list[str] = []
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_worker", kind, variant,
                                      "--_warmup", str(warmup)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env(variant), cwd=str(ROOT))
        msg = self._read(timeout)
        if msg is None or not msg.get("ready"):
            self.error = NA(msg.get("error", "worker failed") if msg else self._stderr_tail())
            self.close()
        else:
            self.notes = msg.get("notes", []) + [f"warm-up {warmup} steps: {msg.get('warmup_s', 0):.1f} s"]

    def _read(self, timeout: float):
        # the worker answers one protocol line per request; anything else on stdout is library chatter
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            line = self.proc.stdout.readline()
            if not line:
                return None
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])
        return None

    def _stderr_tail(self) -> str:
        try:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        except (OSError, ValueError):
            err = ""
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        return f"worker exited {self.proc.poll()}: {lines[-1] if lines else 'no output'}"

    def run(self, n: int, timeout: float = 600) -> list[float] | NA:
        if self.error is not None:
            return self.error
        try:
            self.proc.stdin.write(f"run {n}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.error = NA(self._stderr_tail())
            return self.error
        msg = self._read(timeout)
        if msg is None or "error" in msg:
            self.error = NA(msg["error"] if msg else self._stderr_tail())
            self.close()
            return self.error
        return msg["times"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()


def start_workers(kind: str, variants, warmup: int, timeout: float) -> dict[str, Worker]:
    """Start the workers one after the other (building them in parallel would slow each other)."""
    out = {}
    for v in variants:
        t0 = time.perf_counter()
        log(f"  starting {kind} / {v}...")
        out[v] = Worker(kind, v, warmup + (2 if v == TCOMPILE else 0), timeout)
        log(f"    {'ready' if out[v].error is None else out[v].error} ({time.perf_counter() - t0:.1f} s)")
    return out


def alternate(workers: dict[str, Worker], rounds: int, steps: int, gap_s: float,
              samples: dict[str, list] | None = None) -> dict[str, list | NA]:
    """`rounds` turns per worker, order rotated each round; every step time is kept."""
    samples = samples if samples is not None else {v: [] for v in workers}
    names = list(workers)
    for r in range(rounds):
        k = r % len(names)
        for v in names[k:] + names[:k]:
            if isinstance(samples.get(v), NA):
                continue
            res = workers[v].run(steps)
            if isinstance(res, NA):
                samples[v] = res
            else:
                samples[v].extend(res)
            time.sleep(gap_s)
    return samples


def as_stats(x) -> Stats | NA:
    if isinstance(x, NA):
        return x
    return Stats(x) if x else NA("no samples")


class BusyLoop:
    """One CPU-bound competing process (a Python busy loop), started and stopped by the benchmark."""

    def __init__(self):
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        time.sleep(0.3)        # let the scheduler see it as a running, CPU-bound task
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()


# ============================================================================== reports
def _ms(s: Stats | NA) -> str:
    if isinstance(s, NA):
        return str(s)
    return f"{s.ms:.2f}"


def _p10(s: Stats) -> float:
    xs = sorted(s.samples)
    return xs[len(xs) // 10]


def step_table(kind: str, res: dict[str, Stats | NA]) -> tuple[str, list[str]]:
    base = res.get(TORCH)
    rows, verdicts = [], []
    for v in VARIANTS:
        s = res.get(v)
        if s is None:
            continue
        both = isinstance(s, Stats) and isinstance(base, Stats)
        ratio = base.median / s.median if both else None
        ratio10 = _p10(base) / _p10(s) if both else None
        goal = TARGETS.get((kind, v))
        verdict = "—"
        if goal is not None:
            verdict = "n/a" if ratio is None else (f"pass (≥ {goal}×)" if ratio >= goal else f"MISS (< {goal}×)")
            verdicts.append(f"{kind} / {v}: {fmt_ratio(ratio)} torch eager, target ≥ {goal}× → "
                            f"{verdict.split()[0]}")
        if isinstance(s, Stats):
            rows.append([v, _ms(s), f"{s.q1 * 1e3:.2f}–{s.q3 * 1e3:.2f}", f"{_p10(s) * 1e3:.2f}",
                         f"{max(s.samples) * 1e3:.1f}", f"{1 / s.median:.0f}", fmt_ratio(ratio), fmt_ratio(ratio10),
                         verdict, str(s.n)])
        else:
            rows.append([v, str(s), "—", "—", "—", "—", "—", "—", verdict, "0"])
    table = markdown_table(["variant", "median ms/step", "IQR ms", "p10 ms", "worst ms", "steps/s", "× torch eager",
                            "× torch (p10)", "target", "steps timed"], rows, "lrrrrrrrlr")
    return table, verdicts


def busy_table(quiet: dict, busy: dict) -> tuple[str, list[str]]:
    rows, slow = [], {}
    for v in (COMPILED, TORCH):
        q, b = as_stats(quiet.get(v, [])), as_stats(busy.get(v, []))
        if isinstance(q, NA) or isinstance(b, NA):
            rows.append([v, _ms(q), _ms(b), "—", "—", "—", "—"])
            continue
        slow[v] = b.median / q.median
        sb = sorted(b.samples)
        p90 = sb[min(len(sb) - 1, int(0.9 * len(sb)))]
        rows.append([v, _ms(q), _ms(b), f"{slow[v]:.2f}×", f"{p90 * 1e3:.1f}", f"{max(q.samples) * 1e3:.1f}",
                     f"{sb[-1] * 1e3:.1f}"])
    verdicts = []
    if COMPILED in slow:
        ok = slow[COMPILED] <= BUSY_MAX_SLOWDOWN and (TORCH not in slow or slow[COMPILED] <= slow[TORCH])
        verdicts.append(f"busy: ember compiled slows {slow[COMPILED]:.2f}× (PyTorch eager "
                        f"{slow.get(TORCH, float('nan')):.2f}×), target ≤ {BUSY_MAX_SLOWDOWN}× and ≤ PyTorch's → "
                        f"{'pass' if ok else 'MISS'}")
    return markdown_table(["variant", "quiet median ms", "busy median ms", "slowdown", "busy p90 ms",
                           "quiet worst ms", "busy worst ms"], rows, "lrrrrrr"), verdicts


# ============================================================================== main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help=f"comma-separated from {','.join(ALL)}")
    ap.add_argument("--rounds", type=int, default=7, help="turns per worker (default 7)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per turn (default 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps after building (default 5)")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between turns (default 0.05)")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (minutes of compiling here)")
    ap.add_argument("--no-eager", action="store_true", help="skip ember eager")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before each workload, wait up to S seconds for the 1-min load average to drop below "
                         "0.75 x cores (shared machines)")
    ap.add_argument("--out", default=None, help="markdown file to write (default: benchmarks/STEPS.md for a full run)")
    ap.add_argument("--_worker", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_warmup", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        return worker(args._worker[0], args._worker[1], args._warmup)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(ALL)
    bad = [s for s in only if s not in ALL]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {ALL}")
    out_path = args.out or (None if args.only else str(HERE / "STEPS.md"))
    info = machine_info()
    t_start = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = ["# Training-step benchmark (each variant in its own process)", "",
             f"Written by `python benchmarks/bench_steps.py {' '.join(argv)}`; started {t_start}.  "
             f"{args.rounds} alternating turns of {args.steps} timed steps per variant (after {args.warmup} "
             "warm-up steps); medians over all timed steps.  × torch eager = torch eager median / variant median "
             "(> 1: faster than PyTorch eager); × torch (p10) compares the 10th percentiles, the steps least "
             "disturbed by other processes: on a loaded machine PyTorch's default OpenMP threads (spin, then "
             "barrier) suffer far more than single-threaded code, and the median ratio flatters ember.  "
             "Targets are judged on the median; read them with the load averages below.  Method: this file's "
             "docstring.", "",
             "## Machine", "", markdown_table(["", ""], list(info.items()), "ll"), ""]
    verdicts: list[str] = []
    variants = [v for v in VARIANTS if not (v == TCOMPILE and args.no_torch_compile)
                and not (v == EAGER and args.no_eager)]
    for kind in only:
        if kind == "busy":
            continue
        if args.wait_quiet:
            wait_quiet(args.wait_quiet, log=log)
        log(f"{kind}: load average {loadavg()}")
        load0 = loadavg()
        workers = start_workers(kind, variants, args.warmup, timeout=1200)
        try:
            samples = alternate(workers, args.rounds, args.steps, args.gap)
        finally:
            for w in workers.values():
                w.close()
        res = {v: as_stats(samples[v]) for v in variants}
        table, ver = step_table(kind, res)
        verdicts += ver
        notes = [f"- {v}: {n}" for v, w in workers.items() for n in w.notes]
        parts += [f"## {kind}", "", table, "", f"load average at the end: {loadavg()} (at the start: {load0})", ""] \
            + notes + [""]
        log(table)
    if "busy" in only:
        if args.wait_quiet:
            wait_quiet(args.wait_quiet, log=log)
        log(f"busy: load average {loadavg()}")
        workers = start_workers("mnist_sgd", [COMPILED, TORCH], args.warmup, timeout=1200)
        quiet: dict = {v: [] for v in workers}
        busy: dict = {v: [] for v in workers}
        try:
            for _ in range(args.rounds):      # quiet and busy turns alternate too
                alternate(workers, 1, args.steps, args.gap, quiet)
                with BusyLoop():
                    alternate(workers, 1, args.steps, args.gap, busy)
                time.sleep(0.3)
        finally:
            for w in workers.values():
                w.close()
        table, ver = busy_table(quiet, busy)
        verdicts += ver
        parts += ["## Busy machine: MNIST SGD step, quiet vs one CPU-bound peer process", "",
                  f"Each round: {args.steps} quiet steps per variant, then {args.steps} steps per variant while "
                  f"`python -c \"{BUSY_LOOP}\"` runs; {args.rounds} rounds.  Fair share on 2 cores is 2×.", "",
                  table, "", f"load average at the end: {loadavg()}", ""]
        log(table)
    parts += ["## Targets (issue 12)", ""] + [f"- {v}" for v in verdicts] + [""]
    text = "\n".join(parts)
    print(text)
    if out_path:
        Path(out_path).write_text(text + "\n")
        log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
