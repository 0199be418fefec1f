"""Shared timing utilities for ember's benchmarks: interleaved medians, copy bandwidth, machine facts, tables.

In: named zero-argument callables.  Out: `Stats` (median / quartiles of seconds per call) or `NA`
(why a variant has no number).  Nothing here imports ember or torch, so a broken piece of either can
only turn a row into "n/a: <reason>", never stop the run.

    res = interleave({"numpy": f, "ember": g}, rounds=15)    # {"numpy": Stats, "ember": Stats | NA}
    bw = copy_bandwidth(64 << 20, rounds=15)                 # {1: Stats, 2: Stats} (GB/s via .gbs)
    print(markdown_table(["kernel", "ms"], rows))

Method (why each piece is there):
  * round-robin: every round calls each variant once, in an order rotated by one each round, so a
    slow drift of the machine (another tenant, thermal, page cache) hits all variants alike;
  * warm-up calls first (JIT compilation, page-in, BLAS/OpenMP thread start), not timed;
  * a variant faster than `min_sample_s` is called `inner` times per sample (calibrated during
    warm-up) so timer resolution and loop overhead do not dominate;
  * the garbage collector runs between samples and is off inside one (as timeit does), so a
    collection triggered by one variant's garbage is not billed to the next (objects alive before
    the rounds are frozen, so that collection stays cheap);
  * medians and interquartile ranges, never means: one preempted sample must not move the result.
"""
from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = ["NA", "Stats", "interleave", "copy_bandwidth", "machine_info", "markdown_table", "geomean",
           "compare", "short_reason", "fmt_ms", "fmt_ratio", "copy_fn", "loadavg", "wait_quiet", "busy_processes"]


# ------------------------------------------------------------------------------- results
class NA:
    """A variant without a number, and why ("n/a: torch.compile failed: ...")."""

    def __init__(self, reason: str):
        self.reason = " ".join(str(reason).split())

    @classmethod
    def from_exc(cls, what: str, e: BaseException) -> "NA":
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        return cls(f"{what}: {type(e).__name__}: {e}{where}")

    def __str__(self):
        return f"n/a: {self.reason}"

    __repr__ = __str__


@dataclass
class Stats:
    """Seconds per call over interleaved samples."""

    samples: list[float]
    inner: int = 1                      # calls per sample
    nbytes: int | None = None           # bytes the ideal kernel moves per call (for GB/s)
    meta: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return _quantile(self.samples, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.samples, 0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def ms(self) -> float:
        return 1e3 * self.median

    @property
    def gbs(self) -> float | None:
        return None if not self.nbytes else self.nbytes / self.median / 1e9

    @property
    def n(self) -> int:
        return len(self.samples)


def _quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ------------------------------------------------------------------------------- timing
def interleave(fns: dict[str, Callable[[], object] | NA], rounds: int = 15, warmup: int = 2,
               min_sample_s: float = 0.005, max_inner: int = 1000, nbytes: int | None = None,
               log: Callable[[str], None] | None = None) -> dict[str, Stats | NA]:
    """Time each callable, round-robin, `rounds` samples each; NA entries and failures pass through as NA."""
    out: dict[str, Stats | NA] = {}
    live: dict[str, Callable] = {}
    inner: dict[str, int] = {}
    for name, f in fns.items():
        if isinstance(f, NA):
            out[name] = f
            continue
        try:
            dt = 0.0
            for _ in range(max(1, warmup)):
                t0 = time.perf_counter()
                f()
                dt = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - a failing variant becomes a row, not a crash
            out[name] = NA.from_exc("failed in warm-up", e)
            if log:
                log(f"  {name}: {out[name]}")
            continue
        live[name] = f
        inner[name] = max(1, min(max_inner, math.ceil(min_sample_s / max(dt, 1e-9))))
    samples: dict[str, list[float]] = {k: [] for k in live}
    order = list(live)
    was_enabled = gc.isenabled()
    # objects alive now (torch, ember, models) move to the permanent generation: the collection
    # between samples then walks only new garbage (~1 ms instead of ~150 ms with torch loaded)
    gc.collect()
    gc.freeze()
    try:
        for r in range(rounds):
            k = r % len(order) if order else 0
            for name in order[k:] + order[:k]:
                if name not in live:
                    continue
                f, n = live[name], inner[name]
                gc.collect()
                gc.disable()
                try:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        f()
                    samples[name].append((time.perf_counter() - t0) / n)
                except Exception as e:  # noqa: BLE001
                    out[name] = NA.from_exc(f"failed in round {r}", e)
                    del live[name]
                finally:
                    if was_enabled:
                        gc.enable()
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
    for name in fns:
        if name in live:
            out[name] = Stats(samples[name], inner[name], nbytes)
    return {name: out[name] for name in fns}


_POOL: ThreadPoolExecutor | None = None
_COPY_BUFS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def copy_fn(nbytes: int, threads: int) -> Callable[[], None]:
    """A numpy copy of `nbytes` into a reused buffer, split over `threads` Python threads.

    np.copyto releases the GIL for plain dtypes, so threads copying disjoint slices use several cores."""
    global _POOL
    n = nbytes // 4
    if n not in _COPY_BUFS:
        src = np.ones(n, np.float32)
        dst = np.zeros_like(src)          # fault the pages in before timing
        _COPY_BUFS[n] = (src, dst)
    src, dst = _COPY_BUFS[n]
    threads = max(1, min(threads, os.cpu_count() or 1))
    if threads == 1:
        return lambda: np.copyto(dst, src)
    if _POOL is None or _POOL._max_workers < threads:  # noqa: SLF001
        _POOL = ThreadPoolExecutor(max_workers=threads)
    pool = _POOL
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def split():
        futs = [pool.submit(np.copyto, dst[a:b], src[a:b]) for a, b in bounds[1:]]
        a, b = bounds[0]
        np.copyto(dst[a:b], src[a:b])
        for fu in futs:
            fu.result()
    return split


def copy_bandwidth(nbytes: int = 64 << 20, rounds: int = 15, threads: Iterable[int] = (1, 2)) -> dict[int, Stats]:
    """GB/s (read + written = 2 * nbytes) of a numpy copy on 1 and 2 threads: the ceiling a memory-bound
    fused kernel can reach on this machine, in this run."""
    ts = sorted({max(1, min(t, os.cpu_count() or 1)) for t in threads})
    res = interleave({str(t): copy_fn(nbytes, t) for t in ts}, rounds=rounds, warmup=2, nbytes=2 * nbytes)
    return {int(k): v for k, v in res.items() if isinstance(v, Stats)}


def busy_processes(min_cpu: float = 10.0, limit: int = 5) -> str:
    """Other processes that have been using CPU (ps %cpu: CPU time / lifetime): the usual cause of noise."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    me = os.getpid()
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        try:
            pid, cpu = int(parts[0]), float(parts[1])
        except ValueError:
            continue
        if pid != me and cpu >= min_cpu:
            argv = parts[2].split()
            rows.append((cpu, short_reason(" ".join([Path(argv[0]).name] + argv[1:4]), 60)))
    rows.sort(reverse=True)
    return "; ".join(f"{a} ({c:.0f}% CPU over its life)" for c, a in rows[:limit])


def wait_quiet(max_wait_s: float, threshold: float | None = None, log: Callable[[str], None] | None = None) -> float:
    """Wait (up to max_wait_s) until the 1-minute load average drops below `threshold` (default:
    0.75 x cores); return the load average it ended at.  On a shared machine this keeps another
    session's test run out of the numbers when possible."""
    limit = threshold if threshold is not None else 0.75 * (os.cpu_count() or 1)
    t0 = time.monotonic()
    while True:
        try:
            now = os.getloadavg()[0]
        except OSError:
            return float("nan")
        if now < limit or time.monotonic() - t0 >= max_wait_s:
            return now
        if log:
            log(f"  load average {now:.2f} >= {limit:.2f}: waiting ({time.monotonic() - t0:.0f}/{max_wait_s:.0f} s)")
        time.sleep(min(15.0, max(1.0, max_wait_s - (time.monotonic() - t0))))


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ------------------------------------------------------------------------------- comparisons
def compare(actual, expected, rtol: float = 1e-4, atol: float = 1e-5) -> tuple[bool, str]:
    """(ok, "max |err| 1.2e-07 (tol ...)") for arrays or nested tuples/lists of arrays."""
    a_list, e_list = _leaves(actual), _leaves(expected)
    if len(a_list) != len(e_list):
        return False, f"{len(a_list)} outputs vs {len(e_list)} expected"
    worst, ok = 0.0, True
    for a, e in zip(a_list, e_list):
        a = np.asarray(a, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        if a.shape != e.shape:
            return False, f"shape {a.shape} vs expected {e.shape}"
        if a.size == 0:
            continue
        if not np.isfinite(a).all() or not np.isfinite(e).all():
            if not np.array_equal(np.isfinite(a), np.isfinite(e)):
                return False, "non-finite values differ"
            m = np.isfinite(e)
            a, e = a[m], e[m]
            if a.size == 0:
                continue
        err = np.abs(a - e)
        worst = max(worst, float(err.max()))
        ok &= bool(np.all(err <= atol + rtol * np.abs(e)))
    return ok, f"max |err| {worst:.1e} (rtol {rtol:g}, atol {atol:g})"


def _leaves(x) -> list:
    if isinstance(x, (list, tuple)):
        out = []
        for v in x:
            out.extend(_leaves(v))
        return out
    return [x]


def geomean(xs: Iterable[float]) -> float | None:
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


# ------------------------------------------------------------------------------- machine
def machine_info(extra_packages: Sequence[str] = ("numpy", "llvmlite", "networkx", "torch")) -> dict[str, str]:
    """CPU model, cores, memory, load, versions, date, git revision: what a reader needs to trust a number."""
    info: dict[str, str] = {}
    model = platform.processor() or "?"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("?", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                f = line.split(":", 1)[1].split()
                flags = ", ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16") if x in f)
    except OSError:
        pass
    info["cpu"] = model
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 1
    info["cores"] = f"{os.cpu_count()} logical, {affinity} usable by this process"
    if flags:
        info["vector ISA"] = flags
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        info["memory"] = f"{int(mem) / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    info["load average at start"] = loadavg()
    busy = busy_processes()
    if busy:
        info["other busy processes at start"] = busy
    info["os"] = f"{platform.system()} {platform.release()}"
    info["python"] = sys.version.split()[0]
    for p in extra_packages:
        try:
            info[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            info[p] = "not installed"
    info["ember"] = _git_rev()
    for var in ("EMBER_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "EMBER_CACHE_DIR"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    info["date"] = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return info


def _git_rev() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ------------------------------------------------------------------------------- formatting
def short_reason(x, width: int = 48) -> str:
    s = str(x)
    return s if len(s) <= width else s[: width - 1] + "…"


def fmt_ms(x) -> str:
    if isinstance(x, Stats):
        ms = x.ms
        return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"
    return short_reason(x) if x is not None else "—"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one of 'l'/'r' per column (default: first left, rest right)."""
    rows = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])
