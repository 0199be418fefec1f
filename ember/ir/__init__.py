"""ember.ir: the graph IR — op schemas, Graph/Node on networkx, text form, verifier, DOT export.

    from ember.ir import Graph, TType, dtypes, parse, verify
    g = Graph("forward")
    x = g.placeholder("x", TType((4, 3), dtypes.float32))
    g.set_outputs([g.add("mul", [x, x])])
    verify(g); assert parse(str(g)) == g

This layer knows nothing of Tensor; everything above it (passes, codegen, runtime, frontend)
builds on it.
"""
# Imports are eager on purpose: `verify` is both a submodule and a function, and a lazy
# (PEP 562) re-export would hand out the module once someone imported ember.ir.verify directly.
from . import dtypes, ops
from .dot import to_dot
from .dtypes import DType
from .graph import PLACEHOLDER, Graph, Node, sanitize_name
from .ops import OPS, OpDef, ShapeError, TType, infer
from .text import (ParseError, format_attr, format_node, format_type, parse, parse_module, print_graph,
                   print_module)
from .verify import VerifyError, verify

__all__ = ["dtypes", "ops", "DType", "TType", "OPS", "OpDef", "ShapeError", "infer",
           "Graph", "Node", "PLACEHOLDER", "sanitize_name",
           "parse", "parse_module", "print_graph", "print_module", "format_node", "format_type",
           "format_attr", "ParseError", "verify", "VerifyError", "to_dot"]
