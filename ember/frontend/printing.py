"""repr/str of tensors formatted as PyTorch prints them (the algorithm of torch/_tensor_str.py).

One formatter per tensor decides, from the (summarised) values, between integer mode ("1."),
fixed ("1.2500") and scientific ("1.0000e+08") notation and a common column width; rows wrap at
`linewidth`; tensors over `threshold` elements print `edgeitems` at each end around "...".
"""
from __future__ import annotations

import math

import numpy as np

_opts = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None, sci_mode=None):
    if profile == "default":
        _opts.update(precision=4, threshold=1000, edgeitems=3, linewidth=80)
    elif profile == "short":
        _opts.update(precision=2, threshold=1000, edgeitems=2, linewidth=80)
    elif profile == "full":
        _opts.update(precision=4, threshold=math.inf, edgeitems=3, linewidth=80)
    for k, v in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                 ("linewidth", linewidth)):
        if v is not None:
            _opts[k] = v
    _opts["sci_mode"] = sci_mode


class _Formatter:
    """Chooses the notation and the column width from the values it will print."""

    def __init__(self, a):
        self.floating = a.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        prec = _opts["precision"]
        flat = a.reshape(-1)
        if not self.floating:
            for v in flat.tolist():
                self.max_width = max(self.max_width, len(f"{v}"))
        else:
            vals = flat[np.isfinite(flat) & (flat != 0)]
            if vals.size:
                absd = np.abs(vals.astype(np.float64))
                mn, mx = float(absd.min()), float(absd.max())
                self.int_mode = bool(np.all(vals == np.ceil(vals)))
                forced = _opts["sci_mode"]
                self.sci_mode = (mx / mn > 1000.0 or mx > 1.0e8 or mn < 1.0e-4) if forced is None else forced
                pyvals = vals.tolist()
                if self.sci_mode:
                    self.max_width = max(len(f"{v:.{prec}e}") for v in pyvals)
                elif self.int_mode:   # "1." : one more for the point
                    self.max_width = max(len(f"{v:.0f}") + 1 for v in pyvals)
                else:
                    self.max_width = max(len(f"{v:.{prec}f}") for v in pyvals)

    def width(self):
        return self.max_width

    def format(self, v):
        prec = _opts["precision"]
        if self.floating:
            if self.sci_mode:
                r = f"{v:{self.max_width}.{prec}e}"
            elif self.int_mode:
                r = f"{v:.0f}"
                if not (math.isinf(v) or math.isnan(v)):
                    r += "."
            else:
                r = f"{v:.{prec}f}"
        else:
            r = f"{v}"
        return (self.max_width - len(r)) * " " + r


def _summarized(a):
    """The values that will be shown (edge items of every dim) when the tensor is summarised."""
    e = _opts["edgeitems"]
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        return np.concatenate((a[:e], a[-e:])) if a.shape[0] > 2 * e else a
    if not e:
        return np.empty((0,) * a.ndim, a.dtype)
    rows = list(range(e)) + list(range(a.shape[0] - e, a.shape[0])) if a.shape[0] > 2 * e else range(a.shape[0])
    return np.stack([_summarized(a[i]) for i in rows])


def _vector_str(a, indent, summarize, fmt):
    e = _opts["edgeitems"]
    per_line = max(1, int(math.floor((_opts["linewidth"] - indent) / (fmt.width() + 2))))
    if summarize and not e:
        data = ["..."]
    elif summarize and a.shape[0] > 2 * e:
        data = [fmt.format(v) for v in a[:e].tolist()] + [" ..."] + [fmt.format(v) for v in a[-e:].tolist()]
    else:
        data = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _tensor_str(a, indent, summarize, fmt):
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector_str(a, indent, summarize, fmt)
    e = _opts["edgeitems"]
    n = a.shape[0]
    if summarize and n > 2 * e:
        rows = ([_tensor_str(a[i], indent + 1, summarize, fmt) for i in range(e)] + ["..."]
                + [_tensor_str(a[i], indent + 1, summarize, fmt) for i in range(n - e, n)])
    else:
        rows = [_tensor_str(a[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def format_values(a, indent=len("tensor(")):
    """The bracketed body of a tensor's repr, from its numpy array."""
    if a.size == 0:
        return "[]"
    if a.dtype.itemsize == 2 and a.dtype.kind in "fV":   # float16, bfloat16: print their float32 values
        a = a.astype(np.float32)
    summarize = a.size > _opts["threshold"]
    fmt = _Formatter(_summarized(a) if summarize else a)
    return _tensor_str(a, indent, summarize, fmt)


def _add_suffixes(s, suffixes, indent):
    parts = [s]
    last_line_len = len(s) - s.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > _opts["linewidth"]:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(t) -> str:
    from . import dispatch
    from ..ir import dtypes as dt
    if dispatch.tracer is not None and dispatch.tracer.pending(t):
        dispatch.tracer.graph_break("print", t)
    a = t._data if t.device.type == "cpu" else t._data.get()
    prefix = "tensor("
    suffixes = []
    if t.device.type != "cpu":
        suffixes.append(f"device='{t.device}'")
    if a.size == 0:
        if a.ndim != 1:
            suffixes.append(f"size={tuple(a.shape)}")
        if t.dtype is not dt.default_float:
            suffixes.append(f"dtype={t.dtype!r}")
        body = "[]"
    else:
        if t.dtype not in (dt.default_float, dt.int64, dt.bool_):
            suffixes.append(f"dtype={t.dtype!r}")
        body = format_values(a, len(prefix))
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, len(prefix))
