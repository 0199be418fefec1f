"""ReduceOp: the reductions all_reduce, reduce and reduce_scatter apply (torch.distributed.ReduceOp).

    dist.all_reduce(t, op=dist.ReduceOp.MAX)

SUM, AVG, PRODUCT, MIN, MAX for every dtype (bool: SUM/MAX are logical or, PRODUCT/MIN logical and;
AVG needs a number); BAND, BOR, BXOR for integer and bool tensors.
"""
from __future__ import annotations

import enum

__all__ = ["ReduceOp"]


class ReduceOp:
    """The namespace of reduction kinds; `ReduceOp.SUM` is a `ReduceOp.RedOpType` member."""

    class RedOpType(enum.Enum):
        SUM = 0
        PRODUCT = 1
        MIN = 2
        MAX = 3
        BAND = 4
        BOR = 5
        BXOR = 6
        AVG = 7

        def __repr__(self):
            return f"<RedOpType.{self.name}: {self.value}>"

    SUM = RedOpType.SUM
    AVG = RedOpType.AVG
    PRODUCT = RedOpType.PRODUCT
    MIN = RedOpType.MIN
    MAX = RedOpType.MAX
    BAND = RedOpType.BAND
    BOR = RedOpType.BOR
    BXOR = RedOpType.BXOR


BITWISE = (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)


def as_op(op, what: str) -> ReduceOp.RedOpType:
    """Accept ReduceOp.X, a RedOpType, or its name ("sum", "avg", ...); anything else is an error."""
    if isinstance(op, ReduceOp.RedOpType):
        return op
    if isinstance(op, str) and op.upper() in ReduceOp.RedOpType.__members__:
        return ReduceOp.RedOpType[op.upper()]
    raise ValueError(f"ember.distributed.{what}: op must be a ReduceOp (SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, "
                     f"BXOR), got {op!r}")
