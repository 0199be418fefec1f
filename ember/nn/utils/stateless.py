"""torch.nn.utils.stateless.functional_call (also ember.func.functional_call): run a module with the given
tensors in place of its parameters and buffers (by qualified name; its own elsewhere, tied names follow
each other) and put its own back after -- gradients flow to the given tensors (MAML-style inner loops)."""
from __future__ import annotations

__all__ = ["functional_call"]


def functional_call(module, parameter_and_buffer_dicts, args=(), kwargs=None, *, tie_weights=True,
                    strict=False):
    dicts = parameter_and_buffer_dicts if isinstance(parameter_and_buffer_dicts, (tuple, list)) \
        else (parameter_and_buffer_dicts,)
    given = {}
    for d in dicts:
        for k, v in d.items():
            if k in given:
                raise ValueError(f"{k} appeared in multiple dictionaries; behavior of functional call is ambiguous")
            given[k] = v
    slots = {}          # name -> (registry dict, key) of every parameter and buffer, tied names included
    for prefix, m in module.named_modules(remove_duplicate=False):
        for reg in (m._parameters, m._buffers):
            for k, v in reg.items():
                if v is not None:
                    slots[f"{prefix}.{k}" if prefix else k] = (reg, k)
    unknown = [k for k in given if k not in slots]
    if unknown:
        raise RuntimeError(f"Unexpected key(s): {', '.join(repr(k) for k in unknown)}.")
    if strict:
        missing = [k for k in slots if k not in given]
        if missing:
            raise RuntimeError(f"Missing key(s): {', '.join(repr(k) for k in missing)}.")
    by_tensor = {id(slots[k][0][slots[k][1]]): v for k, v in given.items()} if tie_weights else {}
    saved = []
    try:
        for name, (reg, k) in slots.items():
            new = given.get(name, by_tensor.get(id(reg[k])))
            if new is not None:
                saved.append((reg, k, reg[k]))
                dict.__setitem__(reg, k, new)      # (a plain tensor in the registry, as PyTorch's swap)
        return module(*(args if isinstance(args, tuple) else (args,)), **(kwargs or {}))
    finally:
        for reg, k, old in reversed(saved):
            dict.__setitem__(reg, k, old)
