"""LLVM renderer: kernel IR -> LLVM IR text (llvmlite.ir).  Pure: nothing is compiled or run here.

In: `Kernel`s / `ExternKernel`s (ember/ir/kernel.py; an extern contributes its epilogue kernel) and a
`TargetInfo` (triple, data layout, cpu, features; `host_target()` gives the host's).  Out: the text
of ONE module holding one function per kernel (`emit_module`).  ember/runtime/cpu.py optimises,
compiles, caches and calls it.

Generated function, per kernel:

    i32 @<kernel.name>(ptr noalias %<arg0>, ..., ptr noalias %err, i64 %start, i64 %stop, i64 %s0, ...)

  * one pointer per buffer in `kernel.args` order (inputs, then outputs), contiguous row-major;
  * `err` points to three int64 slots (value, dimension, size) written when a gather index is out of
    range; the function then returns 1 (0 otherwise).  Out-of-range indices are clamped before any
    read, so memory is never read out of bounds; the rest of the kernel still runs;
  * [start, stop) is the range of the FIRST outer axis this call covers, so the runtime can split it
    over threads;
  * one i64 per size symbol of a dynamic kernel (`kernel.symbols`, sorted by name): extents, strides
    and index constants that hold symbols (ember/ir/symbolic.py) are computed from them.

and beside it `<kernel.name>_claimed(..., i64 %start, i64 %stop, i64 %chunk, ptr %share, ...)`: the same
range in pieces claimed from a counter shared by the threads of one launch (`_emit_claimed`).

The loops and where each node goes come from ember/codegen/loops.py (`linearize`): this module
spells its steps.  Each level is a basic block that ends in a branch to the next one; a node is
inserted before the branch of its level's block, so hoisted code lands outside the loops that do
not need it.  Reduction accumulators are allocas in their own first block (promoted to registers
by SROA).  Ops are spelled by the tables of ember/codegen/llvm/ops.py.

Fast-math: reduction combines (fadd/fmul) carry `reassoc nsz contract` -- without `reassoc` LLVM keeps
a float reduction loop scalar.  Random values (ember/codegen/llvm/random.py) carry no flags at all:
they must equal eager's bit for bit.  `nnan`/`ninf` are never used, so NaN and inf propagate like numpy.
Functions carry "prefer-vector-width"="512" (full AVX-512 width; LLVM defaults to 256 bits).

Rows interleaved: a kernel whose reduction passes run over a short inner domain (at most
SHORT_ROW_POINTS points: softmax over 64 keys, layer norm over 128 features) has its innermost outer
loop unrolled by 2 (`llvm.loop.unroll.count`).  Each row is a chain of dependent steps (reduce, then
horizontal sum, then the next pass) too long for the out-of-order window to overlap one row with the
next; two rows per iteration give the scheduler two independent chains (GPT's attention softmax
480 -> 316 us on one thread, results bit for bit the same).
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from ember.codegen import loops as L
from ember.codegen import transpose
from ember.codegen.llvm_text import masked_moves
from ember.codegen.llvm.math import MathLib
from ember.codegen.llvm.ops import (LLVM_BINARY, LLVM_UNARY, arg_better, bf16_round, combine, combine_minmax, const,
                                    convert)
from ember.codegen.llvm.random import emit_random
from ember.codegen.llvm.target import (I1, I8, I16, I32, I64, PTR, TargetInfo, host_target, i64, ir, llvm_type,
                                       mem_type)
from ember.ir import dtypes as dt
from ember.ir.index import format_index, index_vars as _index_vars
from ember.ir.symbolic import SymInt
from ember.ir.kernel import (Binary, Buf, Cast, Const, IBin, IConst, IGather, IndexValue, Kernel, Load, Random,
                             Unary, Var, Where, _index_postorder)

__all__ = ["emit_module", "SHORT_ROW_POINTS"]

SHORT_ROW_POINTS = 512      # inner domains up to this many points get two rows per outer iteration


class _KernelEmitter:
    """Builds one kernel function from its linearized steps."""

    def __init__(self, module: ir.Module, kernel: Kernel, mathlib: MathLib):
        self.m, self.k, self.math = module, kernel, mathlib
        nbuf = len(kernel.args)
        self.symbols = kernel.symbols
        fnty = ir.FunctionType(I32, [PTR] * nbuf + [PTR, I64, I64] + [I64] * len(self.symbols))
        self.fn = fn = ir.Function(module, fnty, kernel.name)
        fn.attributes.add("nounwind")
        for a, buf in zip(fn.args, kernel.args):
            a.name = buf.name
            a.add_attribute("noalias")
        fn.args[nbuf].name, fn.args[nbuf + 1].name, fn.args[nbuf + 2].name = "err", "start", "stop"
        fn.args[nbuf].add_attribute("noalias")
        self.ptr = {buf.name: a for a, buf in zip(fn.args, kernel.args)}
        self.err_ptr, self.start, self.stop = fn.args[nbuf:nbuf + 3]
        self.sym_value = {}
        for a, name in zip(fn.args[nbuf + 3:], self.symbols):
            a.name = name
            self.sym_value[name] = a

        # allocas get their own first block so that mem2reg/SROA promote them to registers
        self.alloca_block = fn.append_basic_block("allocas")
        self.entry = fn.append_basic_block("entry")
        self.alloca_b = ir.IRBuilder(self.alloca_block)
        self.alloca_b.branch(self.entry)
        self.b = ir.IRBuilder(self.entry)
        self.levels: list[ir.Block] = []             # insertion points, each dominating the next
        self.var_value: dict[tuple, ir.Value] = {}   # ('o'|'r', axis) -> loop variable
        self.var_level: dict[tuple, int] = {}        # ('o'|'r', axis) -> level of its loop body
        self.gathered: dict[tuple, ir.Value] = {}    # (block, buffer, dim, index text) -> checked index
        self.values: dict[int, ir.Value] = {}        # id(node) -> its value where it was last placed
        self.loops: list = []
        self.accs: dict[int, tuple] = {}             # id(reduce) -> (accumulator, index slot, type)
        self.interleave_rows = self._rows_loop()

    # ------------------------------------------------------------------------ skeleton
    def _level_block(self, name: str) -> int:
        """End the current block with a branch to a fresh one; the ended block becomes an
        insertion point for hoisted code.  Returns its level index."""
        cur = self.b.block
        nxt = self.fn.append_basic_block(name + ".cont")
        self.b.branch(nxt)
        self.levels.append(cur)
        self.b.position_at_end(nxt)
        return len(self.levels) - 1

    def _open_loop(self, kind: str, axis: int, lo, hi) -> None:
        b = self.b
        pre = b.block
        header = self.fn.append_basic_block(f"{kind}{axis}.head")
        body = self.fn.append_basic_block(f"{kind}{axis}.body")
        exit_ = self.fn.append_basic_block(f"{kind}{axis}.exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64, name=f"{kind}{axis}")
        i.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", i, hi), body, exit_)
        b.position_at_end(body)
        self.var_value[(kind, axis)] = i
        self.var_level[(kind, axis)] = self._level_block(f"{kind}{axis}")
        self.loops.append((i, header, exit_, len(self.levels) - 1))

    def _close_loop(self) -> None:
        i, header, exit_, level = self.loops.pop()
        b = self.b
        nxt = b.add(i, i64(1), flags=("nsw",))
        i.add_incoming(nxt, b.block)
        br = b.branch(header)
        if i.name == self.interleave_rows:
            br.set_metadata("llvm.loop", self._unroll_metadata(2))
        b.position_at_end(exit_)
        del self.levels[level:]   # the loop's insertion points are gone with it

    def _rows_loop(self) -> str | None:
        """The name of the loop variable whose loop gets two rows per iteration (see the module
        docstring), or None: the innermost outer axis of more than one row, when the inner domain
        is short and static."""
        k = self.k
        if not k.inner or self.symbols or math.prod(k.inner) > SHORT_ROW_POINTS:
            return None
        axis = len(k.outer) - 1
        return f"o{axis}" if k.outer[axis] > 1 else None

    def _unroll_metadata(self, count: int):
        """A loop id `!N = !{!N, !{"llvm.loop.unroll.count", i32 count}}`: LLVM wants a loop id whose
        first operand is itself (llvmlite has no spelling for that: the node is made, then pointed
        at itself); one per loop, tagged with the kernel's name so no two loops share it."""
        m = self.m
        opt = m.add_metadata([ir.MetaDataString(m, "llvm.loop.unroll.count"), ir.Constant(I32, count)])
        tag = m.add_metadata([ir.MetaDataString(m, f"ember.rows.{self.k.name}")])
        loop_id = m.add_metadata([tag, opt])
        loop_id.operands = (loop_id, opt)
        return loop_id

    def _alloca(self, ty, name):
        self.alloca_b.position_before(self.alloca_block.terminator)
        return self.alloca_b.alloca(ty, name=name)

    # ----------------------------------------------------------------------------- main
    def emit(self) -> ir.Function:
        b = self.b
        self.err_flag = self._alloca(I1, "err.flag")
        self.err_vals = [self._alloca(I64, n) for n in ("err.value", "err.dim", "err.size")]
        b.store(ir.Constant(I1, 0), self.err_flag)
        for slot in self.err_vals:
            b.store(i64(0), slot)
        self._level_block("entry")                     # level 0: constants
        for step in L.linearize(self.k):
            getattr(self, "_" + type(step).__name__)(step)
        # report a gather index error (after the loops, so they stay single-exit)
        failed = b.load(self.err_flag, typ=I1)
        with b.if_then(failed, likely=False):
            for j, slot in enumerate(self.err_vals):
                dst = b.gep(self.err_ptr, [i64(j)], source_etype=I64)
                b.store(b.load(slot, typ=I64), dst)
            b.ret(ir.Constant(I32, 1))
        b.ret(ir.Constant(I32, 0))
        return self.fn

    # one method per step of ember/codegen/loops.py
    def _Loop(self, s: L.Loop) -> None:
        # the first outer axis runs over [start, stop): the runtime splits it over threads
        lo, hi = (self.start, self.stop) if (s.kind, s.axis) == ("o", 0) else (i64(0), self._int(s.size))
        self._open_loop(s.kind, s.axis, lo, hi)

    def _EndLoop(self, s: L.EndLoop) -> None:
        self._close_loop()

    def _Node(self, s: L.Node) -> None:
        cur = self.b.block
        self.b.position_before(self.levels[s.level].terminator)
        self.values[id(s.node)] = self._emit_node(s.node)
        self.b.position_at_end(cur)

    def _BeginPass(self, s: L.BeginPass) -> None:
        b = self.b
        for red in s.reduces:
            ty = llvm_type(red.x.dtype)
            acc = self._alloca(ty, f"acc.{red.op}")
            b.store(const(L.reduce_identity(red.op, red.x.dtype), red.x.dtype), acc)
            idx = nan = None
            if red.op in ("argmax", "argmin"):
                idx = self._alloca(I64, f"acc.{red.op}.idx")
                b.store(i64(0), idx)
            elif red.op in ("max", "min") and red.x.dtype.is_floating_point:
                nan = self._alloca(I1, f"acc.{red.op}.nan")      # see combine_minmax
                b.store(ir.Constant(I1, 0), nan)
            self.accs[id(red)] = (acc, idx, ty, nan)

    def _Combine(self, s: L.Combine) -> None:
        b, red = self.b, s.reduce
        acc, idx, ty, nan = self.accs[id(red)]
        v = self.values[id(red.x)]
        old = b.load(acc, typ=ty)
        if nan is not None:
            new, seen = combine_minmax(b, red.op, old, v, b.load(nan, typ=I1))
            b.store(new, acc)
            b.store(seen, nan)
            return
        if idx is None:
            b.store(combine(self, red.op, red.x.dtype, old, v), acc)
            return
        lin = i64(0)
        for axis, stride in enumerate(L.strides(self.k.inner)):
            lin = b.add(lin, b.mul(self.var_value[("r", axis)], self._int(stride)))
        take = arg_better(b, red.op, red.x.dtype, v, old)
        b.store(b.select(take, v, old), acc)
        b.store(b.select(take, lin, b.load(idx, typ=I64)), idx)

    def _EndPass(self, s: L.EndPass) -> None:
        b = self.b
        level = self._level_block(f"after.pass{s.no}")
        assert level == s.level
        cont = b.block
        for red in s.reduces:
            # the reduction's value is available from this level on, for the rest of the point
            acc, idx, ty, nan = self.accs.pop(id(red))
            b.position_before(self.levels[level].terminator)
            res = b.load(idx if idx is not None else acc, typ=I64 if idx is not None else ty)
            if nan is not None:
                res = b.select(b.load(nan, typ=I1), ir.Constant(ty, math.nan), res)
            # bfloat16 sums accumulate in float32 and round once, as eager
            self.values[id(red)] = res if idx is not None else bf16_round(b, res, red.x.dtype)
        b.position_at_end(cont)

    def _StoreStep(self, s: L.StoreStep) -> None:
        b, st = self.b, s.store
        v = self.values[id(st.value)]
        idx = [self._index(e) for e in st.index]
        off = self._offset(st.buf, idx)
        mty = mem_type(st.buf.dtype)
        if st.buf.dtype is dt.bool_:
            v = b.zext(v, I8)
        elif st.buf.dtype is dt.bfloat16:
            # every bf16 register value is already rounded (each op, cast, constant and reduction rounds;
            # loads and uniform draws are exact): the high half is the value, NaN already the quiet 0x7FC0
            v = b.trunc(b.lshr(b.bitcast(v, I32), ir.Constant(I32, 16)), I16)
        addr = b.gep(self.ptr[st.buf.name], [off], source_etype=mty, inbounds=True)
        b.store(v, addr)

    # ------------------------------------------------------------------------ indexing
    def _int(self, v):
        """An i64 size: a constant, or a SymInt's polynomial over the symbol arguments."""
        if not isinstance(v, SymInt):
            return i64(v)
        b, total = self.b, None
        # fractional coefficients (s0/2, from a guarded exact division): sum den*v, then divide
        den = math.lcm(*(getattr(c, "denominator", 1) for c in v.poly.values()))
        for mono, coef in sorted(v.poly.items()):
            term = i64(int(coef * den))
            for name in mono:
                term = b.mul(term, self.sym_value[name], flags=("nsw",))
            total = term if total is None else b.add(total, term, flags=("nsw",))
        return total if den == 1 else b.sdiv(total, i64(den))

    def _index(self, e, into: Buf = None, dim: int = None):
        """i64 value of an index expression, emitted at the builder's position."""
        b = self.b
        vals = {}
        for n in _index_postorder(e):
            if isinstance(n, Var):
                v = self.var_value[(n.kind, n.axis)]
            elif isinstance(n, IConst):
                v = self._int(n.value)
            elif isinstance(n, IBin):
                x, y = vals[id(n.a)], vals[id(n.b)]
                if n.op == "+":
                    v = b.add(x, y, flags=("nsw",))
                elif n.op == "*":
                    v = b.mul(x, y, flags=("nsw",))
                else:  # floor rule with a positive constant divisor
                    q, rem = b.sdiv(x, y), b.srem(x, y)
                    neg = b.icmp_signed("<", rem, i64(0))
                    if n.op == "//":
                        v = b.sub(q, b.zext(neg, I64))
                    else:
                        v = b.add(rem, b.select(neg, y, i64(0)))
            elif isinstance(n, IGather):
                raw = self._load_raw(n.buf, [vals[id(i)] for i in n.index])
                v = b.zext(raw, I64) if L.is_unsigned(n.buf.dtype) else b.sext(raw, I64)
            else:  # pragma: no cover
                raise TypeError(n)
            vals[id(n)] = v
        v = vals[id(e)]
        if into is not None and any(isinstance(n, IGather) for n in _index_postorder(e)):
            v = self._check_gather(e, v, into, dim)
        return v

    def _gathered_index(self, e, buf: Buf, dim: int):
        """A load index that holds a gather (an embedding row, x[o0, o1]), computed and bounds-checked
        once in the block of its innermost loop variable: at the load's own level (inside the
        reduction loops of a layer norm over the gathered row) the check's bookkeeping kept all but
        the first pass scalar."""
        level = max((self.var_level[(v.kind, v.axis)] for v in _index_vars(e)), default=0)
        block = self.levels[level]
        if block is self.b.block:
            return self._index(e, buf, dim)
        key = (id(block), buf.name, dim, format_index(e))
        if key not in self.gathered:
            cur = self.b.block
            self.b.position_before(block.terminator)
            self.gathered[key] = self._index(e, buf, dim)
            self.b.position_before(cur.terminator)
        return self.gathered[key]

    def _check_gather(self, e, v, buf: Buf, dim: int):
        """Wrap / bounds-check a gathered index: record an error and use 0 when out of range."""
        b = self.b
        size = self._int(buf.shape[dim])
        raw = v
        if any(n.wrap for n in _index_postorder(e) if isinstance(n, IGather)):
            v = b.select(b.icmp_signed("<", v, i64(0)), b.add(v, size), v)
        bad = b.icmp_unsigned(">=", v, size)           # unsigned: negatives are huge
        b.store(b.or_(b.load(self.err_flag, typ=I1), bad), self.err_flag)
        for slot, new in zip(self.err_vals, (raw, i64(dim), size)):
            b.store(b.select(bad, new, b.load(slot, typ=I64)), slot)
        return b.select(bad, i64(0), v)

    def _offset(self, buf: Buf, idx_vals):
        b = self.b
        off = None
        for v, stride in zip(idx_vals, L.strides(buf.shape)):
            term = v if stride == 1 else b.mul(v, self._int(stride), flags=("nsw",))
            off = term if off is None else b.add(off, term, flags=("nsw",))
        return off if off is not None else i64(0)

    def _load_raw(self, buf: Buf, idx_vals, offset=None):
        """Load from buf at the given index values; returns the register-typed value."""
        b = self.b
        off = self._offset(buf, idx_vals) if offset is None else offset
        mty = mem_type(buf.dtype)
        addr = b.gep(self.ptr[buf.name], [off], source_etype=mty, inbounds=True)
        v = b.load(addr, typ=mty)
        if buf.dtype is dt.bool_:
            v = b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
        elif buf.dtype is dt.bfloat16:   # the high half of a float32: exact
            v = b.bitcast(b.shl(b.zext(v, I32), ir.Constant(I32, 16)), ir.FloatType())
        return v

    # ------------------------------------------------------------------------- nodes
    def _opaque_inf(self, n):
        """±inf read from a module global instead of written as a constant. In `where(mask, -inf, x)`
        feeding a max reduction (causal attention), a constant -inf is the reduction's identity:
        instcombine folds it into the accumulator update (select(mask, acc, max(acc, x))) and the
        loop vectoriser gives up -- 7x slower. A load it cannot see through keeps a plain select
        and a vectorised reduction; the value is the same."""
        name = f"ember.{'neg' if float(n.value) < 0 else 'pos'}_inf_{n.dtype.short}"
        g = self.m.globals.get(name)
        if g is None:
            g = ir.GlobalVariable(self.m, llvm_type(n.dtype), name)
            g.initializer = const(n.value, n.dtype)   # not `constant`: that would let LLVM fold it again
        return self.b.load(g, typ=llvm_type(n.dtype))

    def _emit_node(self, n):
        b, val = self.b, self.values
        if isinstance(n, Load):
            idx = [self._gathered_index(e, n.buf, d) if any(isinstance(x, IGather) for x in _index_postorder(e))
                   else self._index(e, n.buf, d) for d, e in enumerate(n.index)]
            if n.fill is None:
                return self._load_raw(n.buf, idx)
            valid = ir.Constant(I1, 1)
            for d in n.masked:
                ok = b.icmp_unsigned("<", idx[d], self._int(n.buf.shape[d]))   # 0 <= i < size
                valid = b.and_(valid, ok)
            # read a safe address (offset 0) when out of range, then substitute the fill value
            off = b.select(valid, self._offset(n.buf, idx), i64(0))
            v = self._load_raw(n.buf, None, offset=off)
            return b.select(valid, v, const(n.fill, n.dtype))
        if isinstance(n, Const):
            return const(n.value, n.dtype)
        if isinstance(n, IndexValue):
            return convert(b, self._index(n.index), dt.int64, n.dtype, self.m)
        if isinstance(n, Cast):
            return convert(b, val[id(n.x)], n.x.dtype, n.dtype, self.m)
        if isinstance(n, Where):
            a, c = (self._opaque_inf(v) if _is_inf_const(v) else val[id(v)] for v in (n.a, n.b))
            return b.select(val[id(n.cond)], a, c)
        if isinstance(n, Unary):
            return bf16_round(b, LLVM_UNARY[n.op](self, val[id(n.x)], n.x.dtype), n.dtype)
        if isinstance(n, Binary):
            return bf16_round(b, LLVM_BINARY[n.op](self, val[id(n.a)], val[id(n.b)], n.a.dtype), n.dtype)
        if isinstance(n, Random):
            return emit_random(b, self.m, n.dist, n.dtype, val[id(n.seed)], val[id(n.counter)])
        raise TypeError(n)  # pragma: no cover (Reduce results come from EndPass)


def _emit_claimed(module: ir.Module, kernel_fn: ir.Function, nbuf: int, nsym: int) -> ir.Function:
    """<name>_claimed(bufs..., err, start, stop, chunk, share, syms...): the kernel over [start, stop) in
    pieces of `chunk` outer indices claimed from the i64 at share (set to start by the caller; null: all of
    them here) -- several threads share one launch, one call each, taking pieces as they go, instead of a
    Python call per piece (ember/runtime/cpu.py).  Returns the OR of the pieces' statuses."""
    if kernel_fn.blocks:
        kernel_fn.attributes.add("noinline")    # a second copy of its body here cost a third more build time
    fnty = ir.FunctionType(I32, [PTR] * nbuf + [PTR, I64, I64, I64, PTR] + [I64] * nsym)
    fn = ir.Function(module, fnty, kernel_fn.name + "_claimed")
    fn.attributes.add("nounwind")
    bufs, syms = list(fn.args[:nbuf]), list(fn.args[nbuf + 5:])
    err, start, stop, chunk, share = fn.args[nbuf:nbuf + 5]
    entry, head, body, done = (fn.append_basic_block(n) for n in ("entry", "claim", "piece", "done"))
    b = ir.IRBuilder(entry)
    mine, status = b.alloca(I64), b.alloca(I32)
    b.store(start, mine)
    b.store(ir.Constant(I32, 0), status)
    counter = b.select(b.icmp_unsigned("==", share, ir.Constant(PTR, None)), mine, share)
    b.branch(head)
    b.position_at_end(head)
    lo = b.atomic_rmw("add", counter, chunk, "monotonic")
    b.cbranch(b.icmp_signed("<", lo, stop), body, done)
    b.position_at_end(body)
    end = b.add(lo, chunk)
    hi = b.select(b.icmp_signed("<", end, stop), end, stop)
    st = b.call(kernel_fn, bufs + [err, lo, hi] + syms)
    b.store(b.or_(b.load(status, typ=I32), st), status)
    b.branch(head)
    b.position_at_end(done)
    b.ret(b.load(status, typ=I32))
    return fn


def _is_inf_const(n) -> bool:
    return isinstance(n, Const) and n.dtype.is_floating_point and math.isinf(float(n.value))


# ==================================================================================== module
_DEFINE = re.compile(r"^(define .*\))(.*)$", re.M)
_DECLARE = re.compile(r'^declare i32 @"?([\w.]+)"?\(.*$', re.M)


def emit_module(kernels: Sequence, target: TargetInfo | None = None, name: str = "ember") -> str:
    """LLVM IR text of one module holding a function per kernel (externs contribute their epilogue)."""
    target = target or host_target()
    module = ir.Module(name=name)
    module.triple = target.triple
    module.data_layout = target.data_layout
    mathlib = MathLib(module, scalef="+avx512f" in target.features.split(","))
    written = {}       # kernels written as LLVM text (ember/codegen/transpose.py), declared in the module
    for k in L.emitted_kernels(kernels):
        rotation = transpose.plan(k)
        if rotation is None:
            fn = _KernelEmitter(module, k, mathlib).emit()
        else:
            fn = ir.Function(module, ir.FunctionType(I32, [PTR] * 3 + [I64, I64]), k.name)
            with masked_moves(target.vector_bits >= 512):     # (plain whole-vector stores on AVX2)
                written[k.name] = transpose.emit(k, *rotation)
        _emit_claimed(module, fn, len(k.args), len(k.symbols))
    text = str(module)
    if written:
        text = _DECLARE.sub(lambda mo: written.get(mo.group(1), mo.group(0)), text)
        have = set(re.findall(r'^declare [^@]*@"?([\w.]+)"?\(', text, re.M))
        text += "\n" + "\n".join(d for d in transpose.DECLARATIONS if re.search(r"@([\w.]+)\(", d).group(1) not in have)
    # llvmlite has no spelling for string attributes: append it to every definition
    return _DEFINE.sub(lambda mo: f'{mo.group(1)}{mo.group(2)} "prefer-vector-width"="512"', text)
