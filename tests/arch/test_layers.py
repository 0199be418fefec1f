"""The layering of ember's packages is a test, not a paragraph (docs/architecture.md draws it).

Every import of an ember module -- at module level, inside functions, and through importlib with a
literal name -- is checked against DEPENDS: a package may import itself and the packages listed.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EMBER = ROOT / "ember"

# package -> the ember packages it may import. Top-level modules (ember/amp.py, ...) are the public
# API and may import anything below `compiler`; `tools` sits above everything and nothing imports it.
BOTTOM = {"ir": set(), "diagnostics": {"ir"}, "kernels": {"ir"}}
DEPENDS = {
    **BOTTOM,
    "frontend": {"ir", "kernels", "diagnostics"},
    "passes": {"ir", "diagnostics"},
    "codegen": {"ir"},
    "runtime": {"ir", "codegen", "kernels"},
    # collectives on tensors; nn.parallel (DDP) and the DistributedSampler build on them, as in torch
    "distributed": {"ir", "kernels", "frontend"},
    "nn": {"ir", "kernels", "frontend", "distributed"},
    "optim": {"ir", "frontend", "nn"},
    "utils": {"ir", "frontend", "distributed"},
    "datasets": {"ir", "frontend", "utils"},
    "compiler": {"ir", "kernels", "diagnostics", "frontend", "passes", "codegen", "runtime", "nn", "optim"},
}
# The one documented exception: Module.compile imports the compiler lazily, as torch.nn.Module.compile.
EXCEPTIONS = {("ember/nn/modules/module.py", "compiler")}


def _package_of(path: Path) -> str:
    rel = path.relative_to(EMBER)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    """Absolute dotted names an ImportFrom refers to (module, and module.name for submodules)."""
    if node.level:
        pkg = path.relative_to(ROOT).with_suffix("").parts
        pkg = pkg[:-1] if path.name != "__init__.py" else pkg[:-1]
        base = list(pkg[: len(pkg) - (node.level - 1)])
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    return [mod] + [f"{mod}.{a.name}" for a in node.names]


def ember_imports():
    """(file, dotted ember module) for every import in the package, function-level ones included."""
    for path in sorted(EMBER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(path, node)[:1] if node.module else _resolve(path, node)[1:]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) ==
                  "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
                names = [str(node.args[0].value)]
            for name in names:
                if name == "ember" or name.startswith("ember."):
                    yield path, name


def _target_package(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_imports_point_down():
    wrong = []
    for path, name in ember_imports():
        src, dst = _package_of(path), _target_package(name)
        if dst is None or dst == src or (dst not in DEPENDS and dst != "tools"):
            continue     # ember itself, its own package, or a top-level public module (ember.amp ...)
        rel = str(path.relative_to(ROOT))
        if (rel, dst) in EXCEPTIONS:
            continue
        if dst == "tools":
            if src != "tools":
                wrong.append(f"{rel} imports {name} (nothing may import ember.tools)")
        elif src in DEPENDS and dst not in DEPENDS[src]:
            wrong.append(f"{rel} imports {name} ({src} may import only {sorted(DEPENDS[src]) or 'nothing'})")
    assert not wrong, "imports that point the wrong way:\n  " + "\n  ".join(wrong)


def test_every_package_has_a_rule():
    packages = {p.name for p in EMBER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - set(DEPENDS) - {"tools"} <= _API_PACKAGES, \
        f"packages without a layering rule: {sorted(packages - set(DEPENDS) - {'tools'})}"


# Public API packages above the compiler (they may import anything but tools).
_API_PACKAGES = {"onnx", "backends", "cpu", "profiler", "serialization", "autograd", "distributions"}
