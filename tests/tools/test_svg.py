"""Graph pictures: the networkx layered layout, SVG output, Graphviz when installed, and the page
rendered by headless Chromium when one is installed."""
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ember.ir import parse
from ember.compiler.dump import svg

TEXT = """graph forward(%x: f32[8,4], %w: f32[4,4], %b: f32[4]) {
  %0 = matmul(%x, %w) : f32[8,4]        # m.py:1
  %1 = add(%0, %b) : f32[8,4]           # m.py:1
  %2 = mul(%1, %1) : f32[8,4]           # m.py:2
  %3 = exp(%2) : f32[8,4]               # m.py:3
  %4 = sum(%3, dims=[1], keepdim=true) : f32[8,1]   # m.py:3
  %5 = div(%3, %4) : f32[8,4]           # m.py:3
  %6 = add(%5, %x) : f32[8,4]           # m.py:4
  return (%6, %1)
}
"""
NS = {"s": "http://www.w3.org/2000/svg"}


def _rects(svg_text):
    root = ET.fromstring(svg_text)
    out = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        r = g.find("s:rect", NS)
        out[g.get("data-name")] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
    return root, out


def test_networkx_layout_is_valid_svg_without_overlaps():
    g = parse(TEXT)
    pic, engine = svg.render(g, engine="networkx")
    assert engine == "networkx layered layout"
    root, rects = _rects(pic)
    assert set(rects) == {n.name for n in g.nodes()} | {"return"}
    w, h = float(root.get("width")), float(root.get("height"))
    boxes = list(rects.values())
    for i, (x, y, bw, bh) in enumerate(boxes):
        assert 0 <= x and x + bw <= w and 0 <= y and y + bh <= h
        for (x2, y2, bw2, bh2) in boxes[i + 1:]:
            assert x + bw <= x2 or x2 + bw2 <= x or y + bh <= y2 or y2 + bh2 <= y   # no overlap
    # producers sit above their users
    for n in g.nodes():
        for a in n.inputs:
            assert rects[a.name][1] < rects[n.name][1]
    assert "m.py:3" in pic and "f32[8,4]" in pic
    assert svg.render(g, engine="networkx")[0] == pic          # deterministic


def test_groups_colour_and_marks():
    g = parse(TEXT)
    groups = {"%2": "k0_mul_exp_sum_div", "%3": "k0_mul_exp_sum_div", "%5": "k0_mul_exp_sum_div",
              "%6": "k1_add"}
    marks = {"%4": ("break", "[B001] at m.py:3: bool() on a tensor"), "%1": ("fallback", "eager")}
    pic, _ = svg.render(g, groups, marks, engine="networkx")
    root = ET.fromstring(pic)
    fill = {gr.get("data-name"): gr.find("s:rect", NS).get("fill") for gr in root.iter("{http://www.w3.org/2000/svg}g")}
    assert fill["%2"] == fill["%3"] == fill["%5"] != fill["%6"]
    assert fill["%0"] == "#ffffff"
    assert "graph break" in pic and svg.MARK_COLOURS["break"] in pic and svg.MARK_COLOURS["fallback"] in pic
    assert "[k0]" in pic


def test_too_large_graph_is_not_drawn(monkeypatch):
    monkeypatch.setattr(svg, "MAX_NODES", 3)
    pic, engine = svg.render(parse(TEXT), engine="networkx")
    assert "not drawn" in pic and engine.startswith("not drawn")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_graphviz_dot_engine():
    pic, engine = svg.render(parse(TEXT), {"%2": "k0"}, engine="dot")
    assert engine == "graphviz dot" and pic.startswith("<svg") and "m.py:3" in pic
    ET.fromstring(pic)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless chromium installed")
def test_report_renders_in_headless_chromium(dumped, tmp_path):
    _, out, proc = dumped
    assert proc.returncode == 0
    page = out / "mlp_loss_0" / "index.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)         # offline: nothing fetched
    png = tmp_path / "out.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tempfile.mkdtemp()}", f"--screenshot={png}", "--window-size=1400,1000",
           page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90)
    assert png.is_file() and png.stat().st_size > 20_000          # a drawn page, not a blank one
