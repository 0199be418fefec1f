"""torch.compile's `mode=` and `options=` names, and what they turn on in ember.

    cuda_graphs(mode, options) -> bool | None   whether compiled programs on CUDA replay as CUDA
                                                graphs (None: only whole training steps)

    mode                          CUDA graphs   (as in torch.compile)
    None                          for whole training steps (zero_grad .. optimizer.step captured
                                  in one function): their per-call host work is what graphs remove
    "default"                     no
    "reduce-overhead"             yes           one graph launch per call instead of one per kernel
    "max-autotune"                yes           (ember has no autotuning: graphs are what it adds)
    "max-autotune-no-cudagraphs"  no
    options={"triton.cudagraphs": True} turns graphs on without a mode, as in torch.

An unknown mode raises the RuntimeError torch.compile raises; so does a mode together with the
"triton.cudagraphs" option (torch refuses any options with a mode; ember's own options, such as
check="fp64", go with any mode).
On the CPU the graphs have nothing to do (torch logs "skipping cudagraphs due to cpu device"; ember
emits a C004 record).  How the graphs work: ember/runtime/cuda_graph.py.
"""
from __future__ import annotations

__all__ = ["MODES", "cuda_graphs"]

MODES = {"default": False, "reduce-overhead": True, "max-autotune": True, "max-autotune-no-cudagraphs": False}
CUDAGRAPHS_OPTION = "triton.cudagraphs"   # torch's inductor option with the same meaning


def cuda_graphs(mode: str | None, options: dict | None) -> bool | None:
    """Whether `mode` / `options` ask for CUDA graphs (None: the default, graphs for whole training
    steps only); raises for an unknown mode, or for a mode and the cudagraphs option both given."""
    if mode is not None and options and CUDAGRAPHS_OPTION in options:
        raise RuntimeError("Either mode or options can be specified, but both can't be specified at the same time.")
    if mode is None:
        opt = (options or {}).get(CUDAGRAPHS_OPTION)
        return None if opt is None else bool(opt)
    if not isinstance(mode, str) or mode not in MODES:
        raise RuntimeError(f"Unrecognized mode={mode}, should be one of: {', '.join(MODES)}")
    return MODES[mode]
