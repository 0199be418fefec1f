"""Helpers for the inspect-tool tests: a tiny training script and a way to run `ember-ir`."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# An MLP (ember.nn when it imports, raw ops otherwise) and a function with a data-dependent branch.
SCRIPT = '''\
import sys
import ember

try:
    from ember import nn
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
except Exception:                  # nn not usable in this build: the same MLP from raw ops
    w1, b1 = ember.randn(4, 8, requires_grad=True), ember.zeros(8, requires_grad=True)
    w2 = ember.randn(8, 2, requires_grad=True)

    def model(x):
        return (x @ w1 + b1).relu() @ w2


def mlp_loss(x):
    y = model(x)                   # LINE:model
    return (y * y).mean()          # LINE:loss


def branchy(x):
    if x.sum() > 0:                # LINE:branch
        return x * 2
    return x - 1


step = ember.compile(mlp_loss)
gate = ember.compile(branchy)
x = ember.randn(3, 4)
loss = step(x)
loss.backward()
gate(x)
print("script args:", sys.argv[1:])
'''


def script_line(marker: str) -> int:
    for i, line in enumerate(SCRIPT.splitlines(), 1):
        if f"# LINE:{marker}" in line:
            return i
    raise KeyError(marker)


def ember_ir(*args, cwd=None, env=None, timeout=120):
    """Run `python -m ember.tools ARGS` in a subprocess; returns CompletedProcess (text)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("EMBER_DUMP", None)
    e.pop("EMBER_LOGS", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ember.tools", *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


