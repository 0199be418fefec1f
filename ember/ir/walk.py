"""The one post-order walk over the kernel IR's trees and DAGs (index expressions, scalar expressions).

In: roots and a function giving a node's children.  Out: every reachable node once, children
before parents.  Iterative, so deep expressions do not hit Python's recursion limit, and
deterministic (depth first from the roots in order, children left to right), so dumps can be diffed.
Nodes are told apart by identity: kernel-IR nodes are shared by reusing the Python object.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence, TypeVar

__all__ = ["walk_postorder"]

N = TypeVar("N")


def walk_postorder(roots: Iterable[N], children: Callable[[N], Sequence[N]]) -> list[N]:
    order: list[N] = []
    seen: set[int] = set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for c in reversed(children(node)):
                if id(c) not in seen:
                    stack.append((c, False))
    return order
