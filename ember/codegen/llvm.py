"""LLVM code generator: kernel IR -> LLVM IR text (llvmlite.ir).  Pure: nothing is compiled or run here.

In: `Kernel`s / `ExternKernel`s (ember/ir/kernel.py; an extern contributes its epilogue kernel) and a
`TargetInfo` (triple, data layout, cpu, features; `host_target()` gives the host's).  Out: the text
of ONE module holding one function per kernel (`emit_module`).  ember/runtime/cpu.py optimises,
compiles, caches and calls it.

Generated function, per kernel:

    i32 @<kernel.name>(ptr noalias %<arg0>, ..., ptr noalias %err, i64 %start, i64 %stop)

  * one pointer per buffer in `kernel.args` order (inputs, then outputs), contiguous row-major;
  * `err` points to three int64 slots (value, dimension, size) written when a gather index is out of
    range; the function then returns 1 (0 otherwise).  Out-of-range indices are clamped before any
    read, so memory is never read out of bounds; the rest of the kernel still runs;
  * [start, stop) is the range of the FIRST outer axis this call covers, so the runtime can split it
    over threads.

Loop structure for one outer point (see the kernel.py docstring): one loop nest over the inner axes per
reduction pass, accumulators in allocas (promoted to registers by SROA); then a final inner loop for
the stores that use inner variables; then the per-outer-point stores.  Every expression node is
emitted at the shallowest loop level where all its inputs exist ("placement"), so loop-invariant
loads/exps and reduction results are computed once, not per inner iteration -- this keeps the
innermost loops free of branches and gathers so they vectorise.

Fast-math: reduction combines (fadd/fmul) carry `reassoc nsz contract` -- without `reassoc` LLVM keeps
a float reduction loop scalar.  `nnan`/`ninf` are never used, so NaN and inf propagate like numpy.
Functions carry "prefer-vector-width"="512" (full AVX-512 width; LLVM defaults to 256 bits).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import llvmlite

llvmlite.ir_layer_typed_pointers_enabled = False  # opaque pointers (LLVM 22)
import llvmlite.binding as llvm  # noqa: E402
import llvmlite.ir as ir  # noqa: E402

from ember.ir import dtypes as dt  # noqa: E402
from ember.ir.kernel import (Binary, Buf, Cast, Const, ExternKernel, IBin, IConst, IGather,  # noqa: E402
                             IndexValue, Kernel, Load, Reduce, Unary, Var, Where, _index_postorder)
from ember.codegen.llvm_math import MATH_OPS, MathLib, intrinsic  # noqa: E402

__all__ = ["TargetInfo", "host_target", "emit_module", "llvm_type", "REDUCE_FLAGS"]

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
REDUCE_FLAGS = ("reassoc", "nsz", "contract")   # never nnan/ninf: NaN/inf must propagate


# ===================================================================================== target
@dataclass(frozen=True)
class TargetInfo:
    triple: str
    data_layout: str
    cpu: str
    features: str


_native_ready = False


def init_native() -> None:
    """Initialise LLVM's native target (llvm.initialize() raises since llvmlite 0.45)."""
    global _native_ready
    if not _native_ready:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        _native_ready = True


def host_target_machine(opt: int = 3):
    """A fresh target machine for this CPU.  MCJIT takes ownership of one: never share it."""
    init_native()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=opt, reloc="static", codemodel="jitdefault", jit=True)


def host_target() -> TargetInfo:
    tm = host_target_machine()
    return TargetInfo(tm.triple, str(tm.target_data), llvm.get_host_cpu_name(),
                      llvm.get_host_cpu_features().flatten())


# ====================================================================================== types
def llvm_type(d: dt.DType):
    """Register type of a dtype (bool is i1 in registers, i8 in memory; bfloat16 is float in registers,
    i16 in memory, rounded to bfloat16 after every op -- see _bf16_round)."""
    if d is dt.bool_:
        return I1
    if d is dt.bfloat16:
        return ir.FloatType()
    if d.is_floating_point:
        return {2: ir.HalfType(), 4: ir.FloatType(), 8: ir.DoubleType()}[d.itemsize]
    return ir.IntType(8 * d.itemsize)


def _mem_type(d: dt.DType):
    return I8 if d is dt.bool_ else I16 if d is dt.bfloat16 else llvm_type(d)


def _unsigned(d: dt.DType) -> bool:
    return d is dt.uint8 or d is dt.bool_


def _i64(v: int):
    return ir.Constant(I64, int(v))


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


# =================================================================================== emitter
class _KernelEmitter:
    """Builds one kernel function.  See the module docstring for the loop structure."""

    def __init__(self, module: ir.Module, kernel: Kernel, mathlib: MathLib):
        self.m, self.k, self.math = module, kernel, mathlib
        nbuf = len(kernel.args)
        fnty = ir.FunctionType(I32, [PTR] * nbuf + [PTR, I64, I64])
        self.fn = fn = ir.Function(module, fnty, kernel.name)
        fn.attributes.add("nounwind")
        for a, buf in zip(fn.args, kernel.args):
            a.name = buf.name
            a.add_attribute("noalias")
        fn.args[nbuf].name, fn.args[nbuf + 1].name, fn.args[nbuf + 2].name = "err", "start", "stop"
        fn.args[nbuf].add_attribute("noalias")
        self.ptr = {buf.name: a for a, buf in zip(fn.args, kernel.args)}
        self.err_ptr, self.start, self.stop = fn.args[nbuf:]

        # allocas get their own first block so that mem2reg/SROA promote them to registers
        self.alloca_block = fn.append_basic_block("allocas")
        self.entry = fn.append_basic_block("entry")
        self.alloca_b = ir.IRBuilder(self.alloca_block)
        self.alloca_b.branch(self.entry)
        self.b = ir.IRBuilder(self.entry)
        self.levels: list[ir.Block] = []             # insertion points, each dominating the next
        self.var_level: dict[tuple, int] = {}        # ('o'|'r', axis) -> level index
        self.var_value: dict[tuple, ir.Value] = {}
        self.memo: dict = {}                         # placement key -> (value, level)
        self.pass_no = 0                             # current reduction pass (0: outside passes)
        self.loops: list = []

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
        nxt = b.add(i, _i64(1), flags=("nsw",))
        i.add_incoming(nxt, b.block)
        b.branch(header)
        b.position_at_end(exit_)
        del self.levels[level:]   # the loop's insertion points are gone with it

    def _alloca(self, ty, name):
        self.alloca_b.position_before(self.alloca_block.terminator)
        return self.alloca_b.alloca(ty, name=name)

    # ----------------------------------------------------------------------------- main
    def emit(self) -> ir.Function:
        k, b = self.k, self.b
        self.err_flag = self._alloca(I1, "err.flag")
        self.err_vals = [self._alloca(I64, n) for n in ("err.value", "err.dim", "err.size")]
        b.store(ir.Constant(I1, 0), self.err_flag)
        for slot in self.err_vals:
            b.store(_i64(0), slot)
        self._level_block("entry")                     # level 0: constants
        for axis, n in enumerate(k.outer):
            lo, hi = (self.start, self.stop) if axis == 0 else (_i64(0), _i64(n))
            self._open_loop("o", axis, lo, hi)
        self.seg_level = {0: len(self.levels) - 1}
        reduces_by_pass: dict[int, list] = {}
        for node in k.nodes:
            if isinstance(node, Reduce):
                reduces_by_pass.setdefault(k.pass_of[id(node)], []).append(node)
        for p in range(1, k.n_passes + 1):
            self._emit_pass(p, reduces_by_pass.get(p, []))
        inner_stores = [s for s in k.stores if k.store_is_inner(s)]
        outer_stores = [s for s in k.stores if not k.store_is_inner(s)]
        if inner_stores:
            self.pass_no = k.n_passes + 1
            for axis, n in enumerate(k.inner):
                self._open_loop("r", axis, _i64(0), _i64(n))
            for s in inner_stores:
                self._store(s)
            for _ in k.inner:
                self._close_loop()
            self.pass_no = 0
        for s in outer_stores:
            self._store(s)
        for _ in k.outer:
            self._close_loop()
        # report a gather index error (after the loops, so they stay single-exit)
        failed = b.load(self.err_flag, typ=I1)
        with b.if_then(failed, likely=False):
            for j, slot in enumerate(self.err_vals):
                dst = b.gep(self.err_ptr, [_i64(j)], source_etype=I64)
                b.store(b.load(slot, typ=I64), dst)
            b.ret(ir.Constant(I32, 1))
        b.ret(ir.Constant(I32, 0))
        return self.fn

    def _emit_pass(self, p: int, reduces: list) -> None:
        k, b = self.k, self.b
        self.pass_no = p
        accs = []
        for red in reduces:
            ty = llvm_type(red.x.dtype)
            acc = self._alloca(ty, f"acc.{red.op}")
            b.store(_reduce_init(red.op, red.x.dtype, ty), acc)
            idx = None
            if red.op in ("argmax", "argmin"):
                idx = self._alloca(I64, f"acc.{red.op}.idx")
                b.store(_i64(0), idx)
            accs.append((red, acc, idx, ty))
        for axis, n in enumerate(k.inner):
            self._open_loop("r", axis, _i64(0), _i64(n))
        for red, acc, idx, ty in accs:
            v = self.value(red.x)
            old = b.load(acc, typ=ty)
            if idx is None:
                b.store(self._combine(red.op, red.x.dtype, old, v), acc)
            else:
                lin = _i64(0)
                for axis, stride in enumerate(_strides(k.inner)):
                    lin = b.add(lin, b.mul(self.var_value[("r", axis)], _i64(stride)))
                take = self._arg_better(red.op, red.x.dtype, v, old)
                b.store(b.select(take, v, old), acc)
                b.store(b.select(take, lin, b.load(idx, typ=I64)), idx)
        for _ in k.inner:
            self._close_loop()
        self.seg_level[p] = self._level_block(f"after.pass{p}")
        cont = b.block
        for red, acc, idx, ty in accs:
            # the reduction's value is available from this segment on, for the rest of the point
            b.position_before(self.levels[self.seg_level[p]].terminator)
            res = b.load(idx if idx is not None else acc, typ=I64 if idx is not None else ty)
            if idx is None:   # bfloat16 sums accumulate in float32 and round once, as eager
                res = _bf16_round(b, res, red.x.dtype)
            self.memo[id(red)] = (res, self.seg_level[p])
        b.position_at_end(cont)
        self.pass_no = 0

    # ---------------------------------------------------------------------- placement
    def _key(self, node):
        return (id(node), self.pass_no) if self.k.uses_inner[id(node)] else id(node)

    def _index_level(self, exprs) -> int:
        lvl = 0
        for e in exprs:
            for n in _index_postorder(e):
                if isinstance(n, Var):
                    lvl = max(lvl, self.var_level[(n.kind, n.axis)])
        return lvl

    def value(self, root):
        """LLVM value of expression node `root`, emitting it (and its operands) where they belong."""
        key = self._key(root)
        if key in self.memo:
            return self.memo[key][0]
        self._current_block = self.b.block
        # iterative post-order over operands not emitted yet
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            nk = self._key(node)
            if nk in self.memo:
                continue
            if not ready:
                stack.append((node, True))
                for c in reversed(node.operands()):
                    if self._key(c) not in self.memo:
                        stack.append((c, False))
                continue
            if isinstance(node, Load):
                lvl = self._index_level(node.index)
            elif isinstance(node, IndexValue):
                lvl = self._index_level([node.index])
            else:
                lvl = max([self.memo[self._key(c)][1] for c in node.operands()], default=0)
            self.b.position_before(self.levels[lvl].terminator)
            v = self._emit_node(node)
            self.memo[nk] = (v, lvl)
        self.b.position_at_end(self._current_block)
        return self.memo[key][0]

    # ------------------------------------------------------------------------ indexing
    def _index(self, e, into: Buf = None, dim: int = None):
        """i64 value of an index expression, emitted at the builder's position."""
        b = self.b
        vals = {}
        for n in _index_postorder(e):
            if isinstance(n, Var):
                v = self.var_value[(n.kind, n.axis)]
            elif isinstance(n, IConst):
                v = _i64(n.value)
            elif isinstance(n, IBin):
                x, y = vals[id(n.a)], vals[id(n.b)]
                if n.op == "+":
                    v = b.add(x, y, flags=("nsw",))
                elif n.op == "*":
                    v = b.mul(x, y, flags=("nsw",))
                else:  # floor rule with a positive constant divisor
                    q, rem = b.sdiv(x, y), b.srem(x, y)
                    neg = b.icmp_signed("<", rem, _i64(0))
                    if n.op == "//":
                        v = b.sub(q, b.zext(neg, I64))
                    else:
                        v = b.add(rem, b.select(neg, y, _i64(0)))
            elif isinstance(n, IGather):
                raw = self._load_raw(n.buf, [vals[id(i)] for i in n.index])
                v = b.zext(raw, I64) if _unsigned(n.buf.dtype) else b.sext(raw, I64)
            else:  # pragma: no cover
                raise TypeError(n)
            vals[id(n)] = v
        v = vals[id(e)]
        if into is not None and any(isinstance(n, IGather) for n in _index_postorder(e)):
            v = self._check_gather(e, v, into, dim)
        return v

    def _check_gather(self, e, v, buf: Buf, dim: int):
        """Wrap / bounds-check a gathered index: record an error and use 0 when out of range."""
        b = self.b
        size = _i64(buf.shape[dim])
        raw = v
        if any(n.wrap for n in _index_postorder(e) if isinstance(n, IGather)):
            v = b.select(b.icmp_signed("<", v, _i64(0)), b.add(v, size), v)
        bad = b.icmp_unsigned(">=", v, size)           # unsigned: negatives are huge
        b.store(b.or_(b.load(self.err_flag, typ=I1), bad), self.err_flag)
        for slot, new in zip(self.err_vals, (raw, _i64(dim), size)):
            b.store(b.select(bad, new, b.load(slot, typ=I64)), slot)
        return b.select(bad, _i64(0), v)

    def _offset(self, buf: Buf, idx_vals):
        b = self.b
        off = None
        for v, stride in zip(idx_vals, _strides(buf.shape)):
            term = v if stride == 1 else b.mul(v, _i64(stride), flags=("nsw",))
            off = term if off is None else b.add(off, term, flags=("nsw",))
        return off if off is not None else _i64(0)

    def _load_raw(self, buf: Buf, idx_vals, offset=None):
        """Load from buf at the given index values; returns the register-typed value."""
        b = self.b
        off = self._offset(buf, idx_vals) if offset is None else offset
        mty = _mem_type(buf.dtype)
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
            g.initializer = _const(n.value, n.dtype)   # not `constant`: that would let LLVM fold it again
        return self.b.load(g, typ=llvm_type(n.dtype))

    def _emit_node(self, n):
        b = self.b
        if isinstance(n, Load):
            idx = [self._index(e, n.buf, d) for d, e in enumerate(n.index)]
            if n.fill is None:
                return self._load_raw(n.buf, idx)
            valid = ir.Constant(I1, 1)
            for d in n.masked:
                ok = b.icmp_unsigned("<", idx[d], _i64(n.buf.shape[d]))   # 0 <= i < size
                valid = b.and_(valid, ok)
            # read a safe address (offset 0) when out of range, then substitute the fill value
            off = b.select(valid, self._offset(n.buf, idx), _i64(0))
            v = self._load_raw(n.buf, None, offset=off)
            return b.select(valid, v, _const(n.fill, n.dtype))
        if isinstance(n, Const):
            return _const(n.value, n.dtype)
        if isinstance(n, IndexValue):
            return _convert(b, self._index(n.index), dt.int64, n.dtype, self.m)
        if isinstance(n, Cast):
            return _bf16_round(b, _convert(b, self.value_of(n.x), n.x.dtype, n.dtype, self.m), n.dtype)
        if isinstance(n, Where):
            a, c = (self._opaque_inf(v) if _is_inf_const(v) else self.value_of(v) for v in (n.a, n.b))
            return b.select(self.value_of(n.cond), a, c)
        if isinstance(n, Unary):
            return _bf16_round(b, self._unary(n.op, self.value_of(n.x), n.x.dtype), n.dtype)
        if isinstance(n, Binary):
            return _bf16_round(b, self._binary(n.op, self.value_of(n.a), self.value_of(n.b), n.a.dtype), n.dtype)
        raise TypeError(n)  # pragma: no cover (Reduce results are placed by _emit_pass)

    def value_of(self, node):
        return self.memo[self._key(node)][0]

    def _unary(self, op, x, d: dt.DType):
        b, m = self.b, self.m
        ty = x.type
        is_f = d.is_floating_point
        if op in MATH_OPS:
            return self.math.call(b, op, x)
        if op == "neg":
            return b.fneg(x) if is_f else b.sub(ir.Constant(ty, 0), x)
        if op == "abs":
            if is_f:
                return b.call(intrinsic(m, "fabs", ty, 1), [x])
            if d is dt.bool_ or _unsigned(d):
                return x
            return b.select(b.icmp_signed("<", x, ir.Constant(ty, 0)), b.sub(ir.Constant(ty, 0), x), x)
        if op == "sign":
            if is_f:
                one, zero = ir.Constant(ty, 1.0), ir.Constant(ty, 0.0)
                v = b.select(b.fcmp_ordered("<", x, zero), ir.Constant(ty, -1.0), x)   # NaN, +-0 stay
                return b.select(b.fcmp_ordered(">", x, zero), one, v)
            zero = ir.Constant(ty, 0)
            pos = b.zext(b.icmp_signed(">", x, zero) if not _unsigned(d) else b.icmp_unsigned(">", x, zero), ty)
            if _unsigned(d):
                return pos
            return b.sub(pos, b.zext(b.icmp_signed("<", x, zero), ty))
        if op in ("floor", "ceil", "round", "trunc"):
            if not is_f:
                return x
            name = {"floor": "floor", "ceil": "ceil", "round": "roundeven", "trunc": "trunc"}[op]
            return b.call(intrinsic(m, name, ty, 1), [x])
        if op == "sqrt":
            return b.call(intrinsic(m, "sqrt", ty, 1), [x])
        if op == "rsqrt":
            return b.fdiv(ir.Constant(ty, 1.0), b.call(intrinsic(m, "sqrt", ty, 1), [x]))
        if op == "reciprocal":
            return b.fdiv(ir.Constant(ty, 1.0), x)
        if op == "logical_not":
            return b.not_(_truth(b, x, d))
        if op == "isnan":
            return b.fcmp_unordered("uno", x, x) if is_f else ir.Constant(I1, 0)
        if op == "isinf":
            if not is_f:
                return ir.Constant(I1, 0)
            return b.fcmp_ordered("==", b.call(intrinsic(m, "fabs", ty, 1), [x]), ir.Constant(ty, math.inf))
        raise NotImplementedError(f"unary {op} for {d.name}")

    def _binary(self, op, x, y, d: dt.DType):
        b, m = self.b, self.m
        ty = x.type
        is_f = d.is_floating_point
        uns = _unsigned(d)
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            if is_f:   # ne is unordered: NaN != x is true, every other comparison with NaN false
                return b.fcmp_unordered(sym, x, y) if op == "ne" else b.fcmp_ordered(sym, x, y)
            return b.icmp_unsigned(sym, x, y) if uns else b.icmp_signed(sym, x, y)
        if op in ("logical_and", "logical_or"):
            tx, tyy = _truth(b, x, d), _truth(b, y, d)
            return b.and_(tx, tyy) if op == "logical_and" else b.or_(tx, tyy)
        if op in ("maximum", "minimum"):
            if is_f:   # llvm.maximum/minimum propagate NaN (numpy semantics) and vectorise
                return b.call(intrinsic(m, op, ty, 2), [x, y])
            if d is dt.bool_:
                return b.or_(x, y) if op == "maximum" else b.and_(x, y)
            name = ("u" if uns else "s") + ("max" if op == "maximum" else "min")
            return b.call(intrinsic(m, name, ty, 2), [x, y])
        if is_f:
            if op == "add":
                return b.fadd(x, y)
            if op == "sub":
                return b.fsub(x, y)
            if op == "mul":
                return b.fmul(x, y)
            if op == "div":
                return b.fdiv(x, y)
            if op == "pow":
                if ty == ir.DoubleType() or ty == ir.FloatType():
                    return self.math.call(b, "pow", x, y)
                raise NotImplementedError(f"pow for {d.name}")
            if op == "remainder":
                return _float_remainder(b, x, y)
            if op == "floor_divide":
                return _float_floor_divide(b, m, x, y)
        else:
            if op == "add":
                return b.add(x, y)
            if op == "sub":
                return b.sub(x, y)
            if op == "mul":
                return b.mul(x, y)
            if op == "pow":
                return _int_pow(b, x, y, uns)
            if op in ("remainder", "floor_divide"):
                return _int_floor_divmod(b, x, y, uns, op)
        raise NotImplementedError(f"binary {op} for {d.name}")

    # ---------------------------------------------------------------------- reductions
    def _combine(self, op, d: dt.DType, acc, v):
        b = self.b
        if d.is_floating_point:
            if op == "sum":
                return b.fadd(acc, v, flags=REDUCE_FLAGS)
            if op == "prod":
                return b.fmul(acc, v, flags=REDUCE_FLAGS)
            return b.call(intrinsic(self.m, "maximum" if op == "max" else "minimum", acc.type, 2), [acc, v])
        if op == "sum":
            return b.add(acc, v)
        if op == "prod":
            return b.mul(acc, v)
        return self._binary("maximum" if op == "max" else "minimum", acc, v, d)

    def _arg_better(self, op, d: dt.DType, v, best):
        """argmax/argmin: does v replace the current best?  First occurrence wins; NaN is extreme."""
        b = self.b
        if d.is_floating_point:
            better = b.fcmp_ordered(">" if op == "argmax" else "<", v, best)
            first_nan = b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best))
            return b.or_(better, first_nan)
        sym = ">" if op == "argmax" else "<"
        return b.icmp_unsigned(sym, v, best) if _unsigned(d) else b.icmp_signed(sym, v, best)

    # --------------------------------------------------------------------------- stores
    def _store(self, s) -> None:
        b = self.b
        v = self.value(s.value)
        idx = [self._index(e) for e in s.index]
        off = self._offset(s.buf, idx)
        mty = _mem_type(s.buf.dtype)
        if s.buf.dtype is dt.bool_:
            v = b.zext(v, I8)
        elif s.buf.dtype is dt.bfloat16:   # (already rounded: the high half is the value)
            v = b.trunc(b.lshr(b.bitcast(_bf16_round(b, v, dt.bfloat16), I32), ir.Constant(I32, 16)), I16)
        addr = b.gep(self.ptr[s.buf.name], [off], source_etype=mty, inbounds=True)
        b.store(v, addr)


# ============================================================================ scalar helpers
def _is_inf_const(n) -> bool:
    return isinstance(n, Const) and n.dtype.is_floating_point and math.isinf(float(n.value))


def _bf16_round(b, v, d: dt.DType):
    """A float32 register value rounded to the nearest bfloat16 (ties to even; NaN -> quiet NaN), kept
    in float32: eager computes each bfloat16 op in float32 and rounds its result, so do kernels."""
    if d is not dt.bfloat16:
        return v
    bits = b.bitcast(v, I32)
    lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    r = b.and_(b.add(bits, b.add(lsb, ir.Constant(I32, 0x7FFF))), ir.Constant(I32, -65536))
    r = b.select(b.fcmp_unordered("uno", v, v), ir.Constant(I32, 0x7FC00000), r)
    return b.bitcast(r, ir.FloatType())


def _const(value, d: dt.DType):
    ty = llvm_type(d)
    if d is dt.bool_:
        return ir.Constant(I1, int(bool(value)))
    if d is dt.bfloat16:   # the bfloat16 value, as eager's `full` makes it
        import numpy as np
        return ir.Constant(ty, float(np.array(float(value), np.float32).astype(d.np).astype(np.float32)))
    if d.is_floating_point:
        return ir.Constant(ty, float(value))
    return ir.Constant(ty, int(value))


def _reduce_init(op, d: dt.DType, ty):
    if op == "sum":
        return _const(0, d)
    if op == "prod":
        return _const(1, d)
    want_low = op in ("max", "argmax")
    if d.is_floating_point:
        return ir.Constant(ty, -math.inf if want_low else math.inf)
    if d is dt.bool_:
        return ir.Constant(I1, 0 if want_low else 1)
    info = np_iinfo(d)
    return ir.Constant(ty, info[0] if want_low else info[1])


def np_iinfo(d: dt.DType):
    import numpy as np
    i = np.iinfo(d.np)
    return int(i.min), int(i.max)


def _truth(b, x, d: dt.DType):
    """Value != 0 as i1 (NaN is true, like numpy's bool(nan))."""
    if d is dt.bool_:
        return x
    if d.is_floating_point:
        return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
    return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))


def _convert(b, x, src: dt.DType, dst: dt.DType, m):
    """numpy astype semantics (float -> int truncates toward zero; out-of-range/NaN saturate
    instead of being undefined)."""
    if src is dst:
        return x
    if src is dt.bfloat16:   # a float32 register: convert from float32 (callers round a bfloat16 dst)
        src = dt.float32
    if dst is dt.bfloat16:
        dst = dt.float32
        if src is dst:
            return x
    sty, dty = x.type, llvm_type(dst)
    if dst is dt.bool_:
        return _truth(b, x, src)
    if src.is_floating_point and dst.is_floating_point:
        return b.fpext(x, dty) if dst.itemsize > src.itemsize else b.fptrunc(x, dty)
    if src.is_floating_point:
        if src is dt.float16:
            x = b.fpext(x, ir.FloatType())
            sty = x.type
        # saturating convert to i64 (plain fptosi is poison out of range), then wrap to the
        # target width like numpy does on x86
        name = f"llvm.fptosi.sat.i64.{'f32' if sty == ir.FloatType() else 'f64'}"
        sat = m.globals.get(name) or ir.Function(m, ir.FunctionType(I64, [sty]), name)
        v = b.call(sat, [x])
        return v if dty == I64 else b.trunc(v, dty)
    if dst.is_floating_point:
        return b.uitofp(x, dty) if _unsigned(src) else b.sitofp(x, dty)
    # int -> int
    if dty.width < sty.width:
        return b.trunc(x, dty)
    if dty.width == sty.width:
        return x
    return b.zext(x, dty) if _unsigned(src) else b.sext(x, dty)


def _float_remainder(b, x, y):
    """Python/numpy x % y: fmod, then move into the divisor's sign."""
    zero = ir.Constant(x.type, 0.0)
    r = b.frem(x, y)
    fix = b.and_(b.fcmp_ordered("!=", r, zero),
                 b.xor(b.fcmp_ordered("<", r, zero), b.fcmp_ordered("<", y, zero)))
    return b.select(fix, b.fadd(r, y), r)


def _float_floor_divide(b, m, x, y):
    """numpy's npy_floor_divide: (x - fmod(x, y)) / y, corrected to the floor and rounded."""
    ty = x.type
    zero, one, half = ir.Constant(ty, 0.0), ir.Constant(ty, 1.0), ir.Constant(ty, 0.5)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    adj = b.and_(b.fcmp_ordered("!=", mod, zero),
                 b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    div = b.select(adj, b.fsub(div, one), div)
    fl = b.call(intrinsic(m, "floor", ty, 1), [div])
    fl = b.select(b.fcmp_ordered(">", b.fsub(div, fl), half), b.fadd(fl, one), fl)
    q0 = b.fdiv(x, y)
    res = b.select(b.fcmp_ordered("!=", div, zero), fl,
                   b.call(intrinsic(m, "copysign", ty, 2), [zero, q0]))
    return b.select(b.fcmp_ordered("==", y, zero), q0, res)


def _int_floor_divmod(b, x, y, unsigned: bool, op: str):
    """Integer floor division / modulo with numpy's x // 0 == x % 0 == 0, no UB on INT_MIN // -1."""
    ty = x.type
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    y0 = b.icmp_unsigned("==", y, zero)
    if unsigned:
        ys = b.select(y0, one, y)
        res = b.udiv(x, ys) if op == "floor_divide" else b.urem(x, ys)
        return b.select(y0, zero, res)
    minus1 = b.icmp_signed("==", y, ir.Constant(ty, -1))
    ys = b.select(b.or_(y0, minus1), one, y)         # y in {0, -1} handled below
    q, r = b.sdiv(x, ys), b.srem(x, ys)
    fix = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("<", b.xor(r, y), zero))
    if op == "floor_divide":
        res = b.sub(q, b.zext(fix, ty))
        res = b.select(minus1, b.sub(zero, x), res)   # wraps for INT_MIN like numpy
    else:
        res = b.select(fix, b.add(r, y), r)
        res = b.select(minus1, zero, res)
    return b.select(y0, zero, res)


def _int_pow(b, x, y, unsigned: bool):
    """x ** y by unrolled square-and-multiply (branch-free, vectorisable); y < 0 gives 1 // x**|y|."""
    ty = x.type
    one, zero = ir.Constant(ty, 1), ir.Constant(ty, 0)
    result, base = one, x
    for bit in range(ty.width - (0 if unsigned else 1)):
        set_ = b.trunc(b.lshr(y, ir.Constant(ty, bit)), I1)
        result = b.select(set_, b.mul(result, base), result)
        base = b.mul(base, base)
    if unsigned:
        return result
    neg = b.icmp_signed("<", y, zero)
    odd = b.trunc(y, I1)
    inv = b.select(b.icmp_signed("==", x, one), one,
                   b.select(b.icmp_signed("==", x, ir.Constant(ty, -1)),
                            b.select(odd, ir.Constant(ty, -1), one), zero))
    return b.select(neg, inv, result)


# ==================================================================================== module
_DEFINE = re.compile(r"^(define .*\))(.*)$", re.M)


def emit_module(kernels: Sequence, target: TargetInfo | None = None, name: str = "ember") -> str:
    """LLVM IR text of one module holding a function per kernel (externs contribute their epilogue)."""
    target = target or host_target()
    module = ir.Module(name=name)
    module.triple = target.triple
    module.data_layout = target.data_layout
    mathlib = MathLib(module)
    seen = set()
    for k in kernels:
        if isinstance(k, ExternKernel):
            k = k.epilogue
            if k is None:
                continue
        if k.name in seen:
            raise ValueError(f"two kernels named {k.name}")
        seen.add(k.name)
        _KernelEmitter(module, k, mathlib).emit()
    text = str(module)
    # llvmlite has no spelling for string attributes: append it to every definition
    return _DEFINE.sub(lambda mo: f'{mo.group(1)}{mo.group(2)} "prefer-vector-width"="512"', text)
