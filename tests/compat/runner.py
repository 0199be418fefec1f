"""Run a compat script under ember (as written) or under real PyTorch (the same source with its
`ember` imports pointed at `torch`; nothing else changes)."""
from __future__ import annotations

import os
import re
import types

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
_IMPORT = re.compile(r"^(\s*(?:import|from)\s+)ember\b", re.M)


def load(name: str, backend: str = "ember") -> types.ModuleType:
    path = os.path.join(SCRIPTS, name + ".py")
    with open(path) as f:
        src = f.read()
    if backend == "torch":
        src = _IMPORT.sub(r"\1torch", src)
        assert "ember" not in re.sub(r"#.*|\"\"\"[\s\S]*?\"\"\"", "", src), "script uses ember beyond its imports"
    mod = types.ModuleType(f"compat_{name}_{backend}")
    mod.__file__ = path
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod
