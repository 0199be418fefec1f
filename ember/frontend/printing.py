"""repr/str of tensors formatted as PyTorch prints them."""
from __future__ import annotations

import numpy as np

_opts = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None, sci_mode=None):
    if profile == "default":
        _opts.update(precision=4, threshold=1000, edgeitems=3, linewidth=80)
    elif profile == "full":
        _opts.update(threshold=np.inf)
    for k, v in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                 ("linewidth", linewidth)):
        if v is not None:
            _opts[k] = v
    _opts["sci_mode"] = sci_mode


def _float_formatter(values):
    """PyTorch's rule: integers print as '1.', else fixed with `precision` digits, or scientific
    when the range is wide (max/min > 1000 or max > 1e8 or min < 1e-4)."""
    prec = _opts["precision"]
    finite = values[np.isfinite(values)]
    nz = np.abs(finite[finite != 0]) if finite.size else finite
    int_mode = finite.size == 0 or bool(np.all(finite == np.round(finite)))
    sci = False
    if nz.size:
        mx, mn = float(nz.max()), float(nz.min())
        if int_mode:
            sci = mx > 1e8
        else:
            sci = mx / mn > 1000.0 or mx > 1e8 or mn < 1e-4
    if _opts["sci_mode"] is not None:
        sci = _opts["sci_mode"]
    if sci:
        def f(v):
            return _special(v) or f"{v:.{prec}e}"
    elif int_mode:
        def f(v):
            return _special(v) or f"{v:.0f}."
    else:
        def f(v):
            return _special(v) or f"{v:.{prec}f}"
    return f


def _special(v):
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def _format_array(a, indent):
    if a.dtype == np.bool_:
        fmt = lambda v: "True" if v else "False"  # noqa: E731
        flat = a.reshape(-1)
    elif a.dtype.kind in "iu":
        fmt = str
        flat = a.reshape(-1)
    else:
        flat = a.astype(np.float64).reshape(-1)
        shown = _summarized_values(a.astype(np.float64))
        fmt = _float_formatter(shown)
    summarize = a.size > _opts["threshold"]
    strs = {}
    width = max((len(fmt(v)) for v in (_summarized_values(a) if summarize else flat)), default=1)

    def rec(x, ind):
        if x.ndim == 0:
            return fmt(x.item()).rjust(width)
        if x.ndim == 1:
            items = list(x)
            e = _opts["edgeitems"]
            if summarize and len(items) > 2 * e:
                parts = [fmt(v).rjust(width) for v in items[:e]] + ["..."] + [fmt(v).rjust(width) for v in items[-e:]]
            else:
                parts = [fmt(v).rjust(width) for v in items]
            # wrap lines at linewidth
            per_line = max(1, (_opts["linewidth"] - ind) // (width + 2))
            lines = [", ".join(parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
            return "[" + (",\n" + " " * (ind + 1)).join(lines) + "]"
        e = _opts["edgeitems"]
        n = x.shape[0]
        if summarize and n > 2 * e:
            rows = [rec(x[i], ind + 1) for i in range(e)] + ["..."] + [rec(x[i], ind + 1) for i in range(n - e, n)]
        else:
            rows = [rec(x[i], ind + 1) for i in range(n)]
        sep = "," + "\n" * (x.ndim - 1) + " " * (ind + 1)
        return "[" + sep.join(rows) + "]"
    _ = strs
    return rec(a, indent)


def _summarized_values(a):
    e = _opts["edgeitems"]
    if a.size <= _opts["threshold"]:
        return a.reshape(-1)
    idx = []
    for n in a.shape:
        idx.append(np.r_[0:min(n, e), max(n - e, min(n, e)):n] if n > 2 * e else np.arange(n))
    return a[np.ix_(*idx)].reshape(-1) if a.ndim else a.reshape(-1)


def tensor_repr(t) -> str:
    from . import dispatch
    from ..ir import dtypes as dt
    if dispatch.tracer is not None and dispatch.tracer.is_symbolic(t):
        dispatch.tracer.graph_break("print", t)
    a = t._data if t.device.type == "cpu" else t._data.get()
    prefix = "tensor("
    suffix = []
    if t.device.type != "cpu":
        suffix.append(f"device='{t.device}'")
    default_dtypes = (dt.default_float, dt.int64, dt.bool_)
    if a.size == 0:
        body = "[]" if a.ndim == 1 or a.ndim == 0 else "[]"
        if a.ndim > 1:
            suffix.insert(0, f"size={tuple(a.shape)}")
        if t.dtype is not dt.default_float and t.dtype is not dt.int64:
            suffix.append(f"dtype={t.dtype!r}".replace("ember.", "ember."))
    else:
        body = _format_array(a, len(prefix))
        if t.dtype not in default_dtypes:
            suffix.append(f"dtype={t.dtype!r}")
    if t.grad_fn is not None:
        suffix.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffix.append("requires_grad=True")
    return prefix + body + "".join(", " + s for s in suffix) + ")"
