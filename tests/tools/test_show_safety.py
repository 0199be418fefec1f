"""`ember-ir show` treats a dump as untrusted data: it never follows a path out of the dump (`..`,
absolute paths, symbolic links named by report.json) and never prints control characters raw."""
import json
import os

import pytest

import ember
from ember.tools import cli


@pytest.fixture
def dump(tmp_path):
    d = tmp_path / "dump"
    ember.compile(lambda x: (x * 2).exp(), dump=d, backend="eager")(ember.randn(3))
    (tmp_path / "secret.txt").write_text("SECRET\n")
    return d


def _show(capsys, *args):
    rc = cli.main(["show", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _graph_folder(dump):
    (folder,) = [p for p in dump.iterdir() if p.is_dir()]
    return folder


@pytest.mark.parametrize("bad", ["../../secret.txt", "/etc/passwd", "sub/../../../secret.txt"])
def test_stage_paths_outside_the_dump_are_refused(dump, capsys, bad):
    folder = _graph_folder(dump)
    _edit(folder / "report.json", lambda d: d["graph"].update(file=bad))
    rc, out, err = _show(capsys, dump, "--graph", "0")
    assert rc == 2 and "SECRET" not in out and "refused" in err and err.count("\n") == 1


def test_graph_folder_outside_the_dump_is_refused(dump, capsys, tmp_path):
    _edit(dump / "report.json", lambda d: d["graphs"][0].update(folder=".."))
    rc, out, err = _show(capsys, dump, "--graph", "0")
    assert rc == 2 and "refused" in err


def test_symbolic_links_are_not_followed(dump, capsys, tmp_path):
    folder = _graph_folder(dump)
    name = json.loads((folder / "report.json").read_text())["graph"]["file"]
    os.remove(folder / name)
    os.symlink(tmp_path / "secret.txt", folder / name)
    rc, out, err = _show(capsys, dump, "--graph", "0")
    assert rc == 2 and "SECRET" not in out and "symbolic link" in err


def test_control_characters_are_escaped(dump, capsys):
    folder = _graph_folder(dump)
    name = json.loads((folder / "report.json").read_text())["graph"]["file"]
    (folder / name).write_text("graph \x1b[2J\x1b]0;pwned\x07 evil\u202e txt\r\n")
    _edit(dump / "report.json", lambda d: d["graphs"][0].update(status="ok\x1b[31m"))
    _edit(folder / "report.json", lambda d: d.update(fn="f\x1b[1m"))
    for args in ([dump, "--graph", "0"], [dump], [folder]):
        rc, out, err = _show(capsys, *args)
        assert rc == 0, err
        assert not any(c in out for c in "\x1b\x07\r\u202e"), repr(out)
    rc, out, _ = _show(capsys, dump, "--graph", "0")
    assert "\\x1b[2J" in out and "\\u202e" in out
