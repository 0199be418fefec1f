"""Fixtures for the inspect-tool tests: one `ember-ir run` of a tiny training script."""
import pytest

from ir_tool_helpers import SCRIPT, ember_ir


@pytest.fixture(scope="session")
def dumped(tmp_path_factory):
    """(script path, dump dir, CompletedProcess) of one `ember-ir run tiny_train.py a1 --out DIR`."""
    d = tmp_path_factory.mktemp("ember_ir_run")
    script = d / "tiny_train.py"
    script.write_text(SCRIPT)
    out = d / "dump"
    proc = ember_ir("run", script, "a1", "--out", out, cwd=d)
    return script, out, proc
