"""CUDA renderer: kernel IR -> CUDA C source.  Pure: nothing is compiled or launched here.

In: `Kernel`s / `ExternKernel`s (ember/ir/kernel.py; an extern contributes its epilogue kernel).
Out: a `CudaProgram` -- the text of ONE translation unit (`.source`) holding an `extern "C"
__global__` function per kernel, and a `LaunchSpec` per kernel (`.launches[name]`) that tells
ember/runtime/cuda.py how to launch it.  The source needs no headers (so NVRTC compiles it without
include paths) and compiles with nvcc too (`nvcc -c -x cu`), GPU or not.

Generated function, per kernel (buffers in `kernel.args` order: inputs, then outputs):

    extern "C" __global__ void <kernel.name>(const T* __restrict__ g_<in>, ..., T* __restrict__ g_<out>,
                                             long long* __restrict__ err, long long n [, int vec_ok])

  * `n` is the number of outer points (the product of `outer`); all other sizes are compile-time
    constants (shapes are static in kernel IR), so index div/mod by constants are multiply-shifts;
  * `err` points to four int64 slots (flag, value, dimension, size).  A gather index out of range
    sets them once (atomicCAS on the flag), the read uses index 0 instead, and the runtime raises
    `IndexError("index 7 is out of bounds for dimension 0 with size 5")` like the CPU backend;
  * index arithmetic is 32-bit when an interval analysis of every index expression proves it fits,
    64-bit otherwise (`idx_t` in the source); gathered indices are always 64-bit until checked.

The launch strategy (pointwise, thread, warp, block, split) comes from ember/codegen/cuda/strategy.py;
where each node goes comes from ember/codegen/loops.py (`linearize`), whose steps this module spells:
the outer domain is one index per thread (or warp, or block) decomposed into o<k>, the inner domain
one flat loop decomposed into r<k>; a node is emitted per outer point or inside the inner loop.
Multi-pass reductions (softmax: max; sum of exp(x - max); store) are several loops over the row
inside the same thread/warp/block, exactly as on the CPU; reduction results are broadcast to the
whole group before the next pass.  Ops are spelled by the tables of ember/codegen/cuda/ops.py, and
the helpers they call live in prelude.cuh.  CuPy compiles with -ftz=true: float32 denormals flush
to zero.  Random nodes call the generator's helpers (ember/codegen/cuda/random.py), added to the
translation unit when a kernel uses them.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from ember.codegen import loops as L
from ember.codegen.cuda.ops import (CUDA_BINARY, CUDA_UNARY, acc_dtype, acc_init, acc_type, c_type, combine_c,
                                    const_c, convert_c, from_acc, group_reduce_c, to_acc)
from ember.codegen.cuda.random import RNG_HELPERS, random_c
from ember.codegen.cuda.strategy import (SPLIT_PARTS_MAX, CudaProgram, LaunchSpec, choose_strategy, has_gather,
                                         index_range, is_identity, needs_idx64, nonneg)
from ember.ir import dtypes as dt
from ember.ir.kernel import (Binary, Buf, Cast, Const, IConst, IGather, IndexValue, Kernel, Load, Random, Reduce,
                             Store, Unary, Var, Where, _index_postorder)

__all__ = ["emit_program", "emit_kernel", "PRELUDE"]

# helpers every generated translation unit starts with (a data file, so it reads as CUDA C)
PRELUDE = Path(__file__).with_name("prelude.cuh").read_text()


class _Scope:
    """Lines of C at one indentation: the code of one outer point, or of one inner loop's body."""
    __slots__ = ("lines", "indent")

    def __init__(self, indent: str):
        self.lines: list[str] = []
        self.indent = indent

    def add(self, line: str) -> None:
        self.lines.append(self.indent + line)


class _KernelEmitter:
    """Emits one kernel (or both stages of a split reduction) from its linearized steps."""

    def __init__(self, k: Kernel):
        self.k = k
        self.steps = L.linearize(k)
        self.strategy, self.block = choose_strategy(k)
        self.idx64 = needs_idx64(k)
        self.idx = "long long" if self.idx64 else "int"
        self.gathers = any(has_gather(e) for node in k.nodes
                           for e in (node.index if isinstance(node, Load) else
                                     (node.index,) if isinstance(node, IndexValue) else ())) or \
            any(has_gather(e) for s in k.stores for e in s.index)
        ir = str(k).splitlines()
        self.ir_lines = {id(node): ir[1 + i].strip() for i, node in enumerate(k.nodes)}
        self.cname = {b.name: "g_" + re.sub(r"[^A-Za-z0-9_]", "_", b.name) for b in k.args}
        self.point: _Scope | None = None
        self.inner: _Scope | None = None
        self.vec_mode = False        # pointwise vector body: identity accesses read the vector
        self.vec = 1
        self.identity: set[int] = set()   # ids of Load/Store objects that are identity accesses
        self.memo: dict[int, str] = {}    # id(node) -> C variable or literal where it was last placed
        self._pos = {id(node): i for i, node in enumerate(k.nodes)}   # %i in the IR text
        self._tmp = 0
        # how the walk spells the skeleton (set per strategy and stage)
        self.first = self.step = "0"      # inner loop: this thread's first index and its stride
        self.guard: str | None = None     # per-point stores: the thread that writes them
        self.pass_comments = True
        self.partial_out = False          # split stage one: stop at the accumulators
        self.partials: list | None = None  # split stage two: (name, dtype) of the partial buffers
        self.in_pass = False
        self.r_open = 0
        self.loop_head: list[str] = []
        self.accs: dict[int, tuple] = {}  # id(reduce) -> (accumulator, index accumulator, C type)

    # ------------------------------------------------------------------------- helpers
    def tmp(self, stem: str) -> str:
        self._tmp += 1
        return f"{stem}{self._tmp}"

    def signature(self, name: str, extra: Sequence[str] = ()) -> str:
        k = self.k
        params = []
        n_in = len(k.inputs)
        for i, b in enumerate(k.args):
            const = "const " if i < n_in else ""
            params.append(f"{const}{c_type(b.dtype, True)}* __restrict__ {self.cname[b.name]}")
        params.append("long long* __restrict__ err")
        params.append("long long n")
        params.extend(extra)
        head = f'extern "C" __global__ void __launch_bounds__({self.block}) {name}('
        return head + (",\n" + " " * len(head)).join(params) + ")"

    def header_comment(self) -> list[str]:
        k = self.k
        lines = [f"// ---- {k.name}: strategy={self.strategy} block={self.block} "
                 f"index={'64' if self.idx64 else '32'}-bit ----"]
        src = getattr(k, "source_lines", None) or getattr(k, "sources", None)
        if src:
            for s in (src if isinstance(src, (list, tuple)) else [src]):
                lines.append(f"// from: {s}")
        for ln in str(k).splitlines():
            lines.append("// " + ln)
        return lines

    def used_vars(self) -> set:
        """(kind, axis) of the loop variables some non-identity access or index value reads."""
        exprs = []
        for node in self.k.nodes:
            if isinstance(node, Load) and id(node) not in self.identity:
                exprs.extend(node.index)
            elif isinstance(node, IndexValue):
                exprs.append(node.index)
        for s in self.k.stores:
            if id(s) not in self.identity:
                exprs.extend(s.index)
        return {(v.kind, v.axis) for e in exprs for v in _index_postorder(e) if isinstance(v, Var)}

    def decompose(self, scope: _Scope, lin: str, kind: str, shape, attr: str = "") -> None:
        """Declare the used o<k>/r<k> from a linear index over `shape` (row-major)."""
        strides = L.strides(shape)
        used = self.used_vars()
        for a, (size, st) in enumerate(zip(shape, strides)):
            if (kind, a) not in used:
                continue
            if len(shape) == 1:
                expr = lin
            elif a == 0:
                expr = f"{lin} / {st}"
            elif st == 1:
                expr = f"{lin} % {size}"
            else:
                expr = f"({lin} / {st}) % {size}"
            scope.add(f"{attr}const {self.idx} {kind}{a} = {expr};")

    # ------------------------------------------------------------------------ indexing
    def index_c(self, e) -> tuple[str, bool]:
        """C text of an index expression and whether it is 64-bit (contains a gather)."""
        k = self.k
        out: dict[int, tuple[str, int, bool]] = {}   # id -> (text, precedence, wide)
        for n in _index_postorder(e):
            if isinstance(n, Var):
                out[id(n)] = (n.name, 9, False)
            elif isinstance(n, IConst):
                v = n.value
                text = f"{v}LL" if abs(v) >= (1 << 31) else str(v)
                out[id(n)] = (text if v >= 0 else f"({text})", 9, abs(v) >= (1 << 31))
            elif isinstance(n, IGather):
                idx = [out[id(i)][0] for i in n.index]
                off = self.offset_c(n.buf, idx)
                out[id(n)] = (f"(long long){self.cname[n.buf.name]}[{off}]", 9, True)
            else:
                ta, pa, wa = out[id(n.a)]
                tb, pb, wb = out[id(n.b)]
                wide = wa or wb
                if n.op in ("//", "%"):
                    if nonneg(n.a, k.outer, k.inner):
                        ta = ta if pa >= 2 else f"({ta})"
                        text, p = f"{ta} {'/' if n.op == '//' else '%'} {tb}", 2
                    else:
                        fn = "ember_idx_div" if n.op == "//" else "ember_idx_mod"
                        ty = "long long" if wide else self.idx
                        text, p = f"{fn}<{ty}>({ta}, ({ty}){tb})", 9
                elif n.op == "*":
                    ta = ta if pa >= 2 else f"({ta})"
                    tb = tb if pb > 2 else f"({tb})"
                    text, p = f"{ta} * {tb}", 2
                else:
                    if isinstance(n.b, IConst) and n.b.value < 0:
                        text = f"{ta} - {-n.b.value}"
                    else:
                        text = f"{ta} + {tb}"
                    p = 1
                out[id(n)] = (text, p, wide)
        text, _, wide = out[id(e)]
        return text, wide

    def offset_c(self, buf: Buf, idx_texts: Sequence[str]) -> str:
        terms = []
        for t, st in zip(idx_texts, L.strides(buf.shape)):
            if t == "0":
                continue
            if st == 1:
                terms.append(t)
            else:
                paren = t if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|\d+", t) else f"({t})"
                terms.append(f"{paren} * {st}")
        return " + ".join(terms) if terms else "0"

    def checked_dims(self, scope: _Scope, index, buf: Buf, stem: str) -> list[str]:
        """Index texts per dim; dims that use a gather are wrapped/bounds-checked into temps."""
        texts = []
        for d, e in enumerate(index):
            text, wide = self.index_c(e)
            if has_gather(e):
                size = buf.shape[d]
                raw = f"{stem}_raw{d}"
                var = f"{stem}_i{d}"
                scope.add(f"const long long {raw} = {text};")
                if any(g.wrap for g in _index_postorder(e) if isinstance(g, IGather)):
                    scope.add(f"long long {var} = {raw} < 0 ? {raw} + {size}LL : {raw};")
                else:
                    scope.add(f"long long {var} = {raw};")
                scope.add(f"if ((unsigned long long){var} >= {size}ULL) "
                          f"{{ ember_index_error(err, {raw}, {d}, {size}); {var} = 0; }}")
                texts.append(f"({self.idx}){var}")
            else:
                texts.append(text)
        return texts

    # ------------------------------------------------------------------------ the walk
    def walk(self, steps) -> None:
        """Spell steps of ember/codegen/loops.py into self.point (and the inner loops' bodies)."""
        self.memo = {}
        for s in steps:
            getattr(self, "_" + type(s).__name__)(s)

    def _Loop(self, s: L.Loop) -> None:
        if s.kind == "o":   # outer points come from the strategy's decomposition of its index
            return
        self.r_open += 1
        if s.axis == 0:     # one flat loop over the whole inner domain
            if not self.in_pass:
                self.point.add("// stores over the inner domain")
            self.loop_head, self.inner = self.open_inner_loop(self.first, self.step)

    def _EndLoop(self, s: L.EndLoop) -> None:
        if not self.r_open:
            return
        self.r_open -= 1
        if self.r_open:
            return
        # the body was built before it is written out: values it needed at point level were
        # appended to the point scope meanwhile, so they land before the loop
        pt = self.point
        pt.lines.extend(pt.indent + ln for ln in self.loop_head)
        pt.lines.extend(pt.indent + ln for ln in self.inner.lines)
        pt.add("}")
        self.inner = None

    def _Node(self, s: L.Node) -> None:
        node = s.node
        if self.k.uses_inner[id(node)]:
            if self.inner is None:
                raise AssertionError(f"{self.k.name}: inner value needed outside an inner loop")
            scope = self.inner
        else:
            scope = self.point
        if isinstance(node, Const):
            self.memo[id(node)] = const_c(node.value, node.dtype)
            return
        var = f"v{self._pos[id(node)]}"
        expr = self.node_c(node, scope, var)
        scope.add(f"const {c_type(node.dtype)} {var} = {expr};  // {self.ir_lines[id(node)]}")
        self.memo[id(node)] = var

    def _BeginPass(self, s: L.BeginPass) -> None:
        pt = self.point
        if self.pass_comments:
            pt.add(f"// pass {s.no}: {', '.join('reduce.' + r.op for r in s.reduces)}")
        self.in_pass = True
        for red in s.reduces:
            ty = acc_type(red.x.dtype)
            a = f"acc{self._pos[id(red)]}"
            pt.add(f"{ty} {a} = {acc_init(red.op, red.x.dtype)};  // {self.ir_lines[id(red)]}")
            ai = None
            if red.op in ("argmax", "argmin"):
                ai = a + "_i"
                pt.add(f"long long {ai} = 9223372036854775807LL;")
            self.accs[id(red)] = (a, ai, ty)

    def _Combine(self, s: L.Combine) -> None:
        red = s.reduce
        a, ai, ty = self.accs[id(red)]
        v = to_acc(self.memo[id(red.x)], red.x.dtype)
        if ai is None:
            self.inner.add(f"{a} = {combine_c(red.op, a, v, ty)};")
        else:
            self.inner.add(f"if (ember_{red.op}_better({v}, (long long)j, {a}, {ai})) "
                           f"{{ {a} = {v}; {ai} = (long long)j; }}")

    def _EndPass(self, s: L.EndPass) -> None:
        self.in_pass = False
        if self.partial_out:
            return
        if self.partials is not None:
            self.fold_partials(s.reduces)
            return
        for red in s.reduces:
            a, ai, ty = self.accs[id(red)]
            self.group_reduce(self.point, red.op, a, ty, ai)
            self.finish_reduce(red, a, ai)

    def _StoreStep(self, s: L.StoreStep) -> None:
        if s.inner:
            self.store(s.store, self.inner)
        else:
            self.store(s.store, self.point, guard=self.guard)

    def load_c(self, node: Load, scope: _Scope, var: str) -> str:
        buf = node.buf
        mem = lambda t: (f"({t} != 0)" if buf.dtype is dt.bool_ else
                         f"ember_h2f({t})" if buf.dtype is dt.float16 else
                         f"ember_bf2f({t})" if buf.dtype is dt.bfloat16 else t)
        if id(node) in self.identity:
            if self.vec_mode:
                return mem(f"{self.cname[buf.name]}_v[e]")
            return mem(f"{self.cname[buf.name]}[i]")
        dims = self.checked_dims(scope, node.index, buf, var)
        off = self.offset_c(buf, dims)
        if node.fill is None:
            return mem(f"{self.cname[buf.name]}[{off}]")
        conds = []
        for d in node.masked:
            t = dims[d]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|-?\d+", t):
                tv = f"{var}_d{d}"
                scope.add(f"const {self.idx} {tv} = {t};")
                dims[d] = t = tv
            lo, hi = index_range(node.index[d], self.k.outer, self.k.inner)
            if lo < 0:
                conds.append(f"{t} >= 0")
            if hi >= buf.shape[d]:
                conds.append(f"{t} < {buf.shape[d]}")
        off = self.offset_c(buf, dims)
        fill = const_c(node.fill, node.dtype)
        if not conds:
            return mem(f"{self.cname[buf.name]}[{off}]")
        return f"({' && '.join(conds)}) ? {mem(self.cname[buf.name] + '[' + off + ']')} : {fill}"

    def node_c(self, node, scope: _Scope, var: str) -> str:
        if isinstance(node, Load):
            return self.load_c(node, scope, var)
        if isinstance(node, IndexValue):
            text, _ = self.index_c(node.index)
            return convert_c(f"(long long)({text})", dt.int64, node.dtype)
        if isinstance(node, Cast):
            return convert_c(self.memo[id(node.x)], node.x.dtype, node.dtype)
        if isinstance(node, Where):
            return f"{self.memo[id(node.cond)]} ? {self.memo[id(node.a)]} : {self.memo[id(node.b)]}"
        if isinstance(node, Unary):
            return CUDA_UNARY[node.op](self.memo[id(node.x)], node.x.dtype)
        if isinstance(node, Binary):
            return CUDA_BINARY[node.op](self.memo[id(node.a)], self.memo[id(node.b)], node.a.dtype)
        if isinstance(node, Random):
            return random_c(node.dist, node.dtype, self.memo[id(node.seed)], self.memo[id(node.counter)])
        raise TypeError(node)  # pragma: no cover

    # ------------------------------------------------------------------------ stores
    def store(self, s: Store, scope: _Scope, guard: str | None = None) -> None:
        v = self.memo[id(s.value)]
        buf = s.buf
        if buf.dtype is dt.bool_:
            v = f"(unsigned char)({v})"
        elif buf.dtype is dt.float16:
            v = f"ember_f2h({v})"
        elif buf.dtype is dt.bfloat16:
            v = f"ember_f2bf({v})"
        if id(s) in self.identity:
            if self.vec_mode:
                scope.add(f"{self.cname[buf.name]}_v[e] = {v};")
            else:
                scope.add(f"{self.cname[buf.name]}[i] = {v};")
            return
        stem = self.tmp("st")
        dims = self.checked_dims(scope, s.index, buf, stem)
        line = f"{self.cname[buf.name]}[{self.offset_c(buf, dims)}] = {v};"
        scope.add(f"if ({guard}) {line}" if guard else line)

    # ======================================================================= pointwise
    def emit_pointwise(self) -> tuple[str, LaunchSpec]:
        k = self.k
        n = math.prod(k.outer)
        # identity accesses and the vector width
        for node in k.nodes:
            if isinstance(node, Load) and node.fill is None and is_identity(node.index, node.buf, k.outer):
                self.identity.add(id(node))
        for s in k.stores:
            if is_identity(s.index, s.buf, k.outer):
                self.identity.add(id(s))
        vec_bufs = []
        for b in k.args:
            uses = [x for x in list(k.nodes) + list(k.stores)
                    if id(x) in self.identity and x.buf is b]
            if uses:
                vec_bufs.append(b)
        vec = 1
        if vec_bufs and n >= 1024:
            vec = 16 // max(b.dtype.itemsize for b in vec_bufs)
        vec_bytes = tuple(vec * b.dtype.itemsize for b in vec_bufs)
        if vec > 1 and min(vec_bytes) < 2:
            vec = 1
        self.vec = vec
        lines = self.header_comment()
        extra = ["int vec_ok"] if vec > 1 else []
        lines.append(self.signature(k.name, extra) + " {")
        I = self.idx
        lines.append(f"  const {I} stride = ({I})blockDim.x * gridDim.x;")
        lines.append(f"  const {I} total = ({I})n;")
        if vec > 1:
            lines.append(f"  // {vec} elements per step with {', '.join(str(x) for x in sorted(set(vec_bytes)))}-byte "
                         "vector accesses; scalar tail (and everything when a pointer is unaligned)")
            lines.append(f"  const {I} nvec = vec_ok ? total / {vec} : 0;")
            lines.append(f"  for ({I} c = ({I})blockIdx.x * blockDim.x + threadIdx.x; c < nvec; c += stride) {{")
            self.vec_mode = True
            body = _Scope("    ")
            for b in vec_bufs:
                mt = c_type(b.dtype, True)
                vt = _VEC_TYPE[vec * b.dtype.itemsize]
                cn = self.cname[b.name]
                is_in = b in k.inputs
                body.add(f"alignas(16) {mt} {cn}_v[{vec}];")
                if is_in:
                    body.add(f"*reinterpret_cast<{vt}*>({cn}_v) = reinterpret_cast<const {vt}*>({cn})[c];")
            body.add("#pragma unroll")
            body.add(f"for (int e = 0; e < {vec}; ++e) {{")
            self.point = _Scope("      ")
            if any(kind == "o" for kind, _ in self.used_vars()):
                self.point.add(f"const {I} i = c * {vec} + e;")
            self.decompose(self.point, "i", "o", k.outer)
            self.walk(self.steps)
            body.lines.extend(self.point.lines)
            body.add("}")
            for b in vec_bufs:
                if b in k.outputs:
                    vt = _VEC_TYPE[vec * b.dtype.itemsize]
                    cn = self.cname[b.name]
                    body.add(f"reinterpret_cast<{vt}*>({cn})[c] = *reinterpret_cast<const {vt}*>({cn}_v);")
            lines.extend(body.lines)
            lines.append("  }")
            self.vec_mode = False
            start = f"nvec * {vec} + ({I})blockIdx.x * blockDim.x + threadIdx.x"
        else:
            start = f"({I})blockIdx.x * blockDim.x + threadIdx.x"
        lines.append(f"  for ({I} i = {start}; i < total; i += stride) {{")
        self.point = _Scope("    ")
        self.decompose(self.point, "i", "o", k.outer)
        self.walk(self.steps)
        lines.extend(self.point.lines)
        lines.append("  }")
        lines.append("}")
        spec = LaunchSpec(k.name, "pointwise", self.block, n, self.block, vec=vec,
                          vec_args=tuple(k.args.index(b) for b in vec_bufs) if vec > 1 else (),
                          vec_bytes=vec_bytes if vec > 1 else (), gathers=self.gathers, idx64=self.idx64)
        return "\n".join(lines), spec

    # ======================================================================= reductions
    def group_reduce(self, scope: _Scope, op: str, acc: str, ty: str, idx: str | None) -> None:
        """Combine per-thread accumulators across the group; every thread ends with the result."""
        for line in group_reduce_c(self.strategy, self.block, op, acc, ty, idx):
            scope.add(line)

    def _group_vars(self):
        """(first inner index of this thread, inner stride, leader condition)."""
        if self.strategy == "thread":
            return "0", "1", None
        if self.strategy == "warp":
            return "lane", "32", "lane == 0"
        if self.strategy == "split":
            return None, None, "threadIdx.x == 0"
        return "threadIdx.x", str(self.block), "threadIdx.x == 0"

    def open_inner_loop(self, first: str, step: str) -> tuple[list[str], _Scope]:
        m = math.prod(self.k.inner)
        I = self.idx
        head = [f"for ({I} j = {first}; j < {m}; j += {step}) {{"]
        sc = _Scope("  ")
        self.decompose(sc, "j", "r", self.k.inner)
        return head, sc

    def finish_reduce(self, red, a: str, ai: str | None) -> None:
        var = f"v{self._pos[id(red)]}"
        if ai is not None:
            self.point.add(f"const long long {var} = {ai} == 9223372036854775807LL ? 0LL : {ai};")
        else:
            self.point.add(f"const {c_type(red.dtype)} {var} = {from_acc(a, red.dtype)};")
        self.memo[id(red)] = var

    def emit_reduction(self) -> tuple[str, LaunchSpec]:
        k = self.k
        if self.strategy == "split":
            return self.emit_split()
        I = self.idx
        n = math.prod(k.outer)
        lines = self.header_comment()
        lines.append(self.signature(k.name) + " {")
        if self.strategy == "block":
            lines.append("  __shared__ long long ember_sh[32];")
            if any(isinstance(x, Reduce) and x.op.startswith("arg") for x in k.nodes):
                lines.append("  __shared__ long long ember_sh_idx[32];")
            loop = "for (long long p = blockIdx.x; p < n; p += gridDim.x)"
            per_block = 1
        elif self.strategy == "warp":
            lines.append("  const int lane = threadIdx.x & 31;")
            loop = ("for (long long p = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; p < n; "
                    "p += ((long long)gridDim.x * blockDim.x) >> 5)")
            per_block = self.block // 32
        else:
            loop = ("for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; "
                    "p += (long long)gridDim.x * blockDim.x)")
            per_block = self.block
        lines.append(f"  {loop} {{  // one outer point per {self.strategy}")
        self.point = _Scope("    ")
        self.decompose(self.point, f"({I})p", "o", k.outer)
        self.first, self.step, self.guard = self._group_vars()
        self.walk(self.steps)
        lines.extend(self.point.lines)
        lines.append("  }")
        lines.append("}")
        spec = LaunchSpec(k.name, self.strategy, self.block, n, per_block, gathers=self.gathers,
                          idx64=self.idx64)
        return "\n".join(lines), spec

    def emit_split(self) -> tuple[str, LaunchSpec]:
        """Two-stage full reduction: partial sums per block, then one block folds them."""
        k = self.k
        m = math.prod(k.inner)
        parts = max(1, min(SPLIT_PARTS_MAX, m // (self.block * 8)))
        end = next(i for i, s in enumerate(self.steps) if isinstance(s, L.EndPass))
        reduces = self.steps[end].reduces
        scratch = []
        for red in reduces:
            ty = acc_dtype(red.x.dtype)
            scratch.append((f"part{self._pos[id(red)]}", ty.name))
            if red.op.startswith("arg"):
                scratch.append((f"part{self._pos[id(red)]}_i", "int64"))
        sparams = [f"{c_type(dt.by_name(t), True)}* __restrict__ {nm}" for nm, t in scratch]
        sparams_in = ["const " + p for p in sparams]
        out = self.header_comment()
        has_arg = any(r.op.startswith("arg") for r in reduces)
        shared = ["  __shared__ long long ember_sh[32];"] + (
            ["  __shared__ long long ember_sh_idx[32];"] if has_arg else [])

        # stage one: each block reduces a slice of the inner domain into its partial slots
        pname = f"{k.name}_partial"
        out.append(self.signature(pname, sparams) + " {")
        out.extend(shared)
        self.point = _Scope("  ")
        self.decompose(self.point, f"({self.idx})0", "o", k.outer, "[[maybe_unused]] ")
        self.first, self.step = f"({self.idx})blockIdx.x * {self.block} + threadIdx.x", f"{parts * self.block}"
        self.pass_comments, self.partial_out = False, True
        self.walk(self.steps[:end + 1])
        si = 0
        for red in reduces:
            a, ai, ty = self.accs[id(red)]
            self.group_reduce(self.point, red.op, a, ty, ai)
            self.point.add(f"if (threadIdx.x == 0) {scratch[si][0]}[blockIdx.x] = {a};")
            si += 1
            if ai:
                self.point.add(f"if (threadIdx.x == 0) {scratch[si][0]}[blockIdx.x] = {ai};")
                si += 1
        out.extend(self.point.lines)
        out.append("}")
        out.append("")

        # stage two: one block folds the partials in a fixed order and runs the stores
        self._tmp = 0
        out.append(self.signature(k.name, sparams_in) + " {")
        out.extend(shared)
        self.point = _Scope("  ")
        self.decompose(self.point, f"({self.idx})0", "o", k.outer, "[[maybe_unused]] ")
        self.partial_out, self.partials, self.parts, self.guard = False, scratch, parts, "threadIdx.x == 0"
        self.walk(L.linearize(k, with_passes=False))
        out.extend(self.point.lines)
        out.append("}")
        spec = LaunchSpec(k.name, "split", self.block, 1, 1, gathers=self.gathers, parts=parts,
                          scratch=tuple(scratch), partial=pname, idx64=self.idx64)
        return "\n".join(out), spec

    def fold_partials(self, reduces) -> None:
        """Split stage two: each reduction starts from its identity and folds the partial buffers."""
        si = 0
        pt, parts, scratch = self.point, self.parts, self.partials
        for red in reduces:
            ty = acc_type(red.x.dtype)
            a = f"acc{self._pos[id(red)]}"
            ai = a + "_i" if red.op.startswith("arg") else None
            pt.add(f"{ty} {a} = {acc_init(red.op, red.x.dtype)};  // {self.ir_lines[id(red)]}")
            if ai:
                pt.add(f"long long {ai} = 9223372036854775807LL;")
            pt.add(f"for (int b = threadIdx.x; b < {parts}; b += {self.block}) {{")
            if ai:
                pt.add(f"  if (ember_{red.op}_better({scratch[si][0]}[b], {scratch[si + 1][0]}[b], {a}, {ai})) "
                       f"{{ {a} = {scratch[si][0]}[b]; {ai} = {scratch[si + 1][0]}[b]; }}")
            else:
                pt.add(f"  {a} = {combine_c(red.op, a, scratch[si][0] + '[b]', ty)};")
            pt.add("}")
            si += 2 if ai else 1
            self.group_reduce(pt, red.op, a, ty, ai)
            self.finish_reduce(red, a, ai)

    def emit(self) -> tuple[str, LaunchSpec]:
        if self.strategy == "pointwise":
            return self.emit_pointwise()
        return self.emit_reduction()


_VEC_TYPE = {16: "uint4", 8: "uint2", 4: "unsigned int", 2: "unsigned short"}


# ==================================================================================== program
def emit_kernel(kernel: Kernel) -> tuple[str, LaunchSpec]:
    """CUDA C of one kernel (without the prelude) and its launch spec."""
    return _KernelEmitter(kernel).emit()


def emit_program(kernels: Sequence, name: str = "ember") -> CudaProgram:
    """One translation unit with the prelude and a __global__ function per kernel (externs
    contribute their epilogue)."""
    parts = [f"// {name}: generated by ember.codegen.cuda -- do not edit", PRELUDE]
    prog = CudaProgram("")
    emitted = list(L.emitted_kernels(kernels))
    if any(isinstance(node, Random) for k in emitted for node in k.nodes):
        parts.append(RNG_HELPERS)
    for k in emitted:
        text, spec = emit_kernel(k)
        parts.append(text)
        prog.launches[k.name] = spec
        prog.kernels.append(k)
    prog.source = "\n\n".join(parts) + "\n"
    return prog
