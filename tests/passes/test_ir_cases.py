"""Every graph pass on IR text: tests/ir/passes/<pass>/*.ir hold `# passes: a,b`, the input graph,
`# expect:` and the expected graph.  The input and the result verify; the result prints exactly
as expected; running the passes again changes nothing (they reach a fixed point)."""
from pathlib import Path

import pytest

from ember.ir import parse, verify
from ember.passes import run_passes

CASES = sorted((Path(__file__).parent.parent / "ir" / "passes").glob("*/*.ir"))


def load(path):
    text = path.read_text()
    head, expect = text.split("# expect:\n")
    passes = head.splitlines()[0].split(":", 1)[1].strip()
    return passes, parse(head), expect


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_pass_case(path):
    passes, g, expect = load(path)
    verify(g)
    run_passes(g, passes, verify=True)
    assert str(g) == expect
    run_passes(g, passes, verify=True)
    assert str(g) == expect, "not a fixed point"


def test_every_pass_has_cases():
    have = {p.parent.name for p in CASES}
    assert {"decompose", "canonicalize", "constant_fold", "cse", "dce", "movement"} <= have
