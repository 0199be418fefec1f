"""`ember-ir`: look at what the compiler did, and run its stages on IR files (like mlir-opt).

    ember-ir run SCRIPT [ARGS...] --out DIR     run a script with dumping on, print a summary
    ember-ir profile SCRIPT [ARGS...]           run a script under ember.profiler, print the kernel table
    ember-ir show DIR                           summary of a dump (DIR or DIR/<graph>)
    ember-ir show DIR --graph N [--stage S]     the text of graph N (or of one of its stages)
    ember-ir opt FILE.ir --passes a,b,c         run passes on an IR file, print the result
    ember-ir codegen FILE --target llvm|cuda    generated code for an .ir (passes + fusion) or .kir file
    ember-ir diff A.ir B.ir                     what changed, node by node (structural, renaming-blind)
    ember-ir bisect DIR | SCRIPT [ARGS...]      the first pass / fusion decision / kernel that changes a
                                                graph's answer (check repros in DIR, or run SCRIPT with
                                                EMBER_CHECK=fp64 to make them)

In: argv. Out: text on stdout; exit status 0 (ok), 1 (diff found differences / the script failed),
2 (bad input: unknown file, malformed IR with line:col, unknown pass, ...). Bad input is always ONE
line on stderr, never a traceback (--debug shows the traceback of an internal error).
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "ToolError"]

PROG = "ember-ir"


class ToolError(Exception):
    """A one-line user error (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # argparse prints usage + message; we want one line
        raise ToolError(f"{message} (see `{self.prog} --help`)")


def _one_line(msg) -> str:
    return _safe(" | ".join(x.strip() for x in str(msg).strip().splitlines() if x.strip()))


# C0/C1 controls but newline and tab, and the invisible format characters that reorder or hide text
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                     "\u2066-\u206f\ufeff\ufff9-\ufffb]")


def _safe(text: str) -> str:
    """Text from files (a dump is data, maybe hostile) as it may reach a terminal: control and
    format characters (escape sequences, carriage returns, bidi overrides) are shown escaped."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       str(text))


def _confined(root: Path, rel: str) -> Path:
    """root/rel for a name read from a dump's report.json, refusing anything that leaves the dump:
    an absolute path, a `..` part, or a symbolic link on the way."""
    rel_path = Path(str(rel))
    if rel_path.is_absolute() or ".." in rel_path.parts or not rel_path.parts:
        raise ToolError(f"{root}: the report names {str(rel)!r}, outside the dump: refused")
    p = root
    for part in rel_path.parts:
        p = p / part
        if p.is_symlink():
            raise ToolError(f"{root}: {str(rel)!r} is a symbolic link: refused")
    if not p.resolve().is_relative_to(root.resolve()):
        raise ToolError(f"{root}: {str(rel)!r} leads outside the dump: refused")
    return p


# ========================================================================================= input
def _read(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise ToolError(f"{path}: no such file")
    if p.is_dir():
        raise ToolError(f"{path}: is a directory, expected a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{path}: not a text file") from None
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror or e}") from None


def _parse_graphs(path: str, check: bool = True):
    from ..ir.text import ParseError, parse_module
    text = _read(path)
    try:
        graphs = parse_module(text, check=check)
    except ParseError as e:
        raise ToolError(f"{path}:{e.line}:{e.col}: {e.msg}") from None
    except Exception as e:  # a shape rule rejecting the text, etc.
        raise ToolError(f"{path}: {_one_line(e)}") from None
    if not graphs:
        raise ToolError(f"{path}: no graph in file")
    return graphs


# ======================================================================================== passes
def pass_registry() -> dict:
    """name -> fn(graph) -> changed: ember.passes' registry plus 'verify'."""
    from ..ir.verify import verify
    from ..passes import PASSES       # importing ember.passes registers every built-in pass

    def verify_pass(g):
        """Check the graph's invariants (ember.ir.verify); changes nothing."""
        verify(g)
        return False

    return {"verify": verify_pass, **PASSES}


def _run_passes(graph, names, verify_each: bool, path: str, print_after: bool = False):
    from ..ir.verify import VerifyError, verify
    reg = pass_registry()
    for name in names:
        if name not in reg:
            raise ToolError(f"unknown pass {name!r} (known: {', '.join(sorted(reg))})")
    for name in names:
        try:
            reg[name](graph)
        except VerifyError as e:
            first = e.problems[0] if e.problems else (None, str(e))
            where = f"{first[0].name}: " if first[0] is not None else ""
            raise ToolError(f"{path}: {'verify' if name == 'verify' else 'pass ' + name}: graph {graph.name}: "
                            f"{where}{_one_line(first[1])}") from None
        except ToolError:
            raise
        except Exception as e:
            raise ToolError(f"{path}: pass {name} failed on graph {graph.name}: {type(e).__name__}: {_one_line(e)}") \
                from None
        if verify_each and name != "verify":
            try:
                verify(graph)
            except VerifyError as e:
                raise ToolError(f"{path}: pass {name} left an invalid graph {graph.name}: "
                                f"{_one_line(e.problems[0][1]) if e.problems else _one_line(e)}") from None
        if print_after:
            print(f"// ----- after {name}")
            print(str(graph), end="")
    return graph


def _split_names(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


# ===================================================================================== commands
def cmd_opt(a) -> int:
    graphs = _parse_graphs(a.file)
    names = _split_names(a.passes)
    for g in graphs:
        _run_passes(g, names, not a.no_verify, a.file, a.print_after_all)
    from ..ir.text import print_module
    text = print_module(graphs)
    if a.output:
        Path(a.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


def _kernels_from_kir(path: str):
    from ..ir.kernel_text import parse_kernel
    text = _read(path)
    blocks, cur, start = [], [], 1
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(("kernel ", "extern ")) and cur:
            blocks.append((start, "\n".join(cur)))
            cur = []
        if not cur:
            start = i
        if line.strip() or cur:
            cur.append(line)
    if cur:
        blocks.append((start, "\n".join(cur)))
    kernels, notes = [], []
    for start, block in blocks:
        if block.startswith("extern "):
            # a library call: only its epilogue (the kernel block that follows) is generated code
            notes.append(f"// {block.splitlines()[0]}   (library call, not generated)")
            continue
        try:
            kernels.append(parse_kernel(block.strip() + "\n"))
        except Exception as e:
            line = getattr(e, "line", None)
            where = f"{path}:{start + line - 1}" if isinstance(line, int) else f"{path}:{start}"
            raise ToolError(f"{where}: {_one_line(getattr(e, 'msg', e))}") from None
    if not kernels:
        raise ToolError(f"{path}: no kernel in file")
    return kernels, notes


def _kernels_from_ir(path: str, passes: list[str]):
    graphs = _parse_graphs(path)
    if len(graphs) != 1:
        raise ToolError(f"{path}: codegen takes one graph, the file has {len(graphs)}")
    g = graphs[0]
    _run_passes(g, passes, True, path)
    from ..passes.fusion import fuse
    try:
        program = fuse(g)
    except Exception as e:
        raise ToolError(f"{path}: fusion failed: {type(e).__name__}: {_one_line(e)}") from None
    return program.compiled_objects(), list(program.eager_steps)


def cmd_codegen(a) -> int:
    if a.file.endswith(".kir"):
        kernels, notes = _kernels_from_kir(a.file)
    else:
        passes = _split_names(a.passes) if a.passes is not None else _default_passes()
        kernels, eager = _kernels_from_ir(a.file, passes)
        notes = [f"// eager fallback (not generated): {st}" for st in eager]
    comment = ";" if a.target == "llvm" else "//"
    for line in notes:
        print(comment + line[2:])
    if a.target == "cuda":
        from ..codegen import cuda
        print(cuda.emit_program(kernels).source, end="")
        return 0
    from ..codegen import llvm
    try:
        ir_text = llvm.emit_module(kernels)
    except Exception as e:
        raise ToolError(f"{a.file}: LLVM codegen failed: {type(e).__name__}: {_one_line(e)}") from None
    if a.asm or a.opt:
        from ..runtime import cpu
        text = cpu.assembly(ir_text) if a.asm else str(cpu.optimize_ir(ir_text))
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        print(ir_text, end="" if ir_text.endswith("\n") else "\n")
    return 0


def _default_passes() -> list[str]:
    from ..passes.manager import DEFAULT_PASSES
    return list(DEFAULT_PASSES)


def _graph_keys(g):
    """Per node (topological order), a structural key that ignores printed names: op, attrs, type,
    source and the keys of its arguments (inputs keyed by name). Iterative: no recursion."""
    from ..ir.text import format_attr, format_type
    keys = {}
    seq = []
    for n in g.nodes():
        if n.is_placeholder:
            k = ("input", n.name, format_type(n.type, n.device))
        else:
            attrs = tuple((k_, format_attr(v)) for k_, v in sorted(n.attrs.items()))
            k = (n.op, attrs, format_type(n.type, n.device), tuple(keys[x] for x in n._inputs))
            k = hash(k), n.op        # keep keys small: hashing nests the arguments' keys
        keys[n] = k
        if not n.is_placeholder:
            seq.append((n, k))
    return keys, seq


def _node_line(n) -> str:
    from ..ir.text import format_node
    return format_node(n)


def diff_graphs(a, b) -> tuple[list[str], bool]:
    """Lines describing what changed from graph a to graph b, and whether anything did."""
    ka, sa = _graph_keys(a)
    kb, sb = _graph_keys(b)
    out = []
    changed = False
    ins_a = [(p.name, str(p.type)) for p in a.inputs]
    ins_b = [(p.name, str(p.type)) for p in b.inputs]
    if ins_a != ins_b:
        changed = True
        out.append(f"  inputs: {', '.join(n for n, _ in ins_a)} -> {', '.join(n for n, _ in ins_b)}")
    sm = difflib.SequenceMatcher(a=[k for _, k in sa], b=[k for _, k in sb], autojunk=False)
    kept = renamed = removed = added = 0
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            for (na, _), (nb, _) in zip(sa[i1:i2], sb[j1:j2]):
                kept += 1
                if na.name != nb.name:
                    renamed += 1
            continue
        changed = True
        for na, _ in sa[i1:i2]:
            removed += 1
            out.append(f"- {_node_line(na)}")
        for nb, _ in sb[j1:j2]:
            added += 1
            out.append(f"+ {_node_line(nb)}")
    outs_a = [ka[x] for x in a.outputs]
    outs_b = [kb[x] for x in b.outputs]
    if outs_a != outs_b:
        changed = True
        out.append(f"  return: ({', '.join(x.name for x in a.outputs)}) -> ({', '.join(x.name for x in b.outputs)})")
    muts_a = [(p.name, ka[v]) for p, v in a.mutations]
    muts_b = [(p.name, kb[v]) for p, v in b.mutations]
    if muts_a != muts_b:
        changed = True
        out.append("  mutations changed")
    summary = (f"graph {a.name}: {removed} removed, {added} added, {kept} unchanged"
               f"{f' ({renamed} renumbered)' if renamed else ''}; ops {len(sa)} -> {len(sb)}")
    return [summary] + out, changed


def cmd_diff(a) -> int:
    ga = _parse_graphs(a.a, check=False)
    gb = _parse_graphs(a.b, check=False)
    print(f"--- {a.a}")
    print(f"+++ {a.b}")
    any_change = len(ga) != len(gb)
    if len(ga) != len(gb):
        print(f"  {len(ga)} graph(s) -> {len(gb)} graph(s); comparing the first {min(len(ga), len(gb))}")
    for x, y in zip(ga, gb):
        lines, changed = diff_graphs(x, y)
        any_change |= changed
        print("\n".join(lines))
    return 1 if any_change else 0


def cmd_show(a) -> int:
    from ..compiler.dump import report as rp
    try:
        data = rp.load(a.dir)
    except rp.ReportError as e:
        raise ToolError(str(e)) from None
    root = Path(a.dir)
    if data.get("kind") == "run":
        graphs = data.get("graphs", [])
        if a.graph is None:
            if a.json:
                import json
                print(json.dumps(data, indent=1))
            else:
                print(_safe(rp.summary_table(data)))
            return 0
        sel = None
        if a.graph.isdigit() and int(a.graph) < len(graphs):
            sel = graphs[int(a.graph)]
        else:
            sel = next((g for g in graphs if g["folder"] == a.graph), None)
        if sel is None:
            raise ToolError(f"{a.dir}: no graph {a.graph!r} (there are {len(graphs)}: "
                            f"{', '.join(g['folder'] for g in graphs) or 'none'})")
        root = _confined(root, sel["folder"])
        try:
            data = rp.load(root)
        except rp.ReportError as e:
            raise ToolError(str(e)) from None
    elif a.graph is None and a.stage is None:
        if a.json:
            import json
            print(json.dumps(data, indent=1))
        else:
            print(_safe(rp.graph_text(data)))
        return 0
    # one graph folder: print a stage's text (default: the captured forward graph)
    stages = data.get("stages", [])
    which = "backward" if a.backward else "forward"
    if a.stage is None:
        info = data.get("backward" if a.backward else "graph") or {}
        if not info.get("file"):
            raise ToolError(f"{root}: no {which} graph in this dump")
        file = info["file"]
    else:
        cand = [s for s in stages if a.stage in (s["file"], s["stage"]) and (s["which"] == which or a.stage == s["file"])]
        if not cand:
            names = ", ".join(s["file"] for s in stages)
            raise ToolError(f"{root}: no stage {a.stage!r} for the {which} graph (stages: {names})")
        file = cand[-1]["file"]
    print(_safe(_read(str(_confined(root, file)))), end="")
    return 0


def _split_run_argv(argv: list[str]):
    """`run` takes ember-ir options anywhere before `--`; everything else goes to the script."""
    out, layout, rest = None, None, []
    i = 0
    passthrough = []
    if "--" in argv:
        k = argv.index("--")
        argv, passthrough = argv[:k], argv[k + 1:]
    while i < len(argv):
        x = argv[i]
        if x in ("--out", "-o"):
            if i + 1 >= len(argv):
                raise ToolError("run: --out needs a directory")
            out = argv[i + 1]
            i += 2
            continue
        if x.startswith("--out="):
            out = x.split("=", 1)[1]
        elif x.startswith("--layout="):
            layout = x.split("=", 1)[1]
        elif x == "--layout":
            if i + 1 >= len(argv):
                raise ToolError("run: --layout needs auto, dot or networkx")
            layout = argv[i + 1]
            i += 2
            continue
        elif x in ("-h", "--help") and not rest:
            raise _Help()
        else:
            rest.append(x)
        i += 1
    if not rest:
        raise ToolError("run: missing SCRIPT (usage: ember-ir run SCRIPT [ARGS...] --out DIR)")
    return out or "ember_dump", layout, rest[0], rest[1:] + passthrough


class _Help(Exception):
    pass


RUN_HELP = """usage: ember-ir run SCRIPT [ARGS...] --out DIR [--layout auto|dot|networkx]

Run a Python script with ember.compile dumping every graph into DIR (EMBER_DUMP=DIR), then print
a summary: graphs, ops, kernels, breaks, fallbacks, compile time, cache hits. Options of ember-ir
may appear anywhere before `--`; arguments after `--` all go to the script."""


def cmd_run(argv: list[str]) -> int:
    from ..compiler.dump import writer as dump_mod
    from ..compiler.dump import report as rp
    try:
        out, layout, script, args = _split_run_argv(argv)
    except _Help:
        print(RUN_HELP)
        return 0
    if layout is not None:
        if layout not in ("auto", "dot", "networkx"):
            raise ToolError(f"run: --layout must be auto, dot or networkx, not {layout!r}")
        dump_mod.LAYOUT = layout
    sp = Path(script)
    if not sp.is_file():
        raise ToolError(f"{script}: no such file" if not sp.exists() else f"{script}: not a file")
    out_dir = Path(out).resolve()
    try:
        run = dump_mod.run_for(out_dir)
    except OSError as e:
        raise ToolError(f"{out}: cannot create the dump directory: {e.strerror or e}") from None
    os.environ["EMBER_DUMP"] = str(out_dir)
    status = _run_script(sp, args, "the dump holds what was compiled before")
    run.flush()
    data = rp.load(out_dir)
    print(rp.summary_table(data))
    if not data.get("graphs"):
        print("(no graph was compiled: does the script call ember.compile?)")
    print(f"report: {out_dir / 'index.html'}")
    return status


def _run_script(sp: Path, args: list[str], after_error: str) -> int:
    """Run a Python script as __main__ with its own argv; returns its exit status."""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(sp)] + list(args)
    sys.path.insert(0, str(sp.resolve().parent))
    status = 0
    try:
        runpy.run_path(str(sp), run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        import traceback           # the script's own error: its traceback (from the script down) helps
        tb = e.__traceback__
        while tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve() != sp.resolve():
            tb = tb.tb_next
        sys.stdout.flush()
        traceback.print_exception(type(e), e, tb or e.__traceback__)
        print(f"{PROG}: {sp} raised; {after_error}", file=sys.stderr)
        status = 1
    finally:
        sys.argv = old_argv
        sys.path[:] = old_path
    return status


PROFILE_HELP = """usage: ember-ir profile [--sort KEY] [--row-limit N] [--trace FILE] SCRIPT [ARGS...]

Run a Python script under ember.profiler and print the table of its compiled kernels, library calls
(GEMMs) and eager ops: calls, self / total / mean time, bytes moved, GB/s and % of the measured copy
bandwidth (GFLOP/s for GEMMs).  KEY: self_cpu_time_total (default), cpu_time_total, cpu_time, count.
--trace FILE also writes a Chrome trace.  With EMBER_DUMP=DIR set (or ember.compile(..., dump=DIR)) each
compiled graph's rows also go into its dump folder: profile.txt, report.json and a Profile section of its
index.html.  Options come before SCRIPT; what follows it goes to the script."""


def cmd_profile(argv: list[str]) -> int:
    from .. import profiler
    opts = {"--sort": "self_cpu_time_total", "--row-limit": "30", "--trace": None}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-h", "--help"):
            print(PROFILE_HELP)
            return 0
        if argv[i] not in opts or i + 1 >= len(argv):
            raise ToolError(f"profile: unknown option or missing value: {argv[i]}")
        opts[argv[i]] = argv[i + 1]
        i += 2
    if i >= len(argv):
        raise ToolError("profile: missing SCRIPT")
    sort = opts["--sort"]
    if sort not in profiler.SORT_KEYS:
        raise ToolError(f"profile: --sort must be one of {', '.join(profiler.SORT_KEYS)}, not {sort!r}")
    try:
        limit = int(opts["--row-limit"])
    except ValueError:
        raise ToolError(f"profile: --row-limit expects an integer, not {opts['--row-limit']!r}") from None
    sp = Path(argv[i])
    if not sp.is_file():
        raise ToolError(f"{sp}: no such file" if not sp.exists() else f"{sp}: not a file")
    with profiler.profile() as prof:
        status = _run_script(sp, argv[i + 1:], "the table shows what ran before")
    sys.stdout.flush()
    print(prof.key_averages().table(sort_by=sort, row_limit=limit))
    if opts["--trace"]:
        prof.export_chrome_trace(opts["--trace"])
        print(f"trace: {opts['--trace']}")
    return status


def cmd_bisect(a) -> int:
    """Bisect the check repros in a dump (or made by running a script with EMBER_CHECK=fp64)."""
    from ..compiler.check import bisect, load_repros
    target = Path(a.target)
    if target.is_file() and target.suffix == ".py":
        out = Path(a.out or tempfile.mkdtemp(prefix="ember_bisect_")).resolve()
        status = _run_checked(target, a.args, out)
        target = out
        print(f"{a.target}: {'ran without a check mismatch' if status == 0 else 'stopped'}; repros under {out}")
    elif not target.is_dir():
        raise ToolError(f"{a.target}: not a dump directory or a .py script")
    try:
        repros = load_repros(target)
    except (ValueError, OSError) as e:
        raise ToolError(f"{a.target}: damaged check repro: {_one_line(e)}") from None
    if not repros:
        raise ToolError(f"{a.target}: no check repro (a check_repro folder appears when a graph compiled with "
                        "EMBER_CHECK=fp64 disagrees with its float64 reference)")
    for name, graph, arrays in repros:
        print(f"== {name}")
        for line in bisect(graph, arrays, runner=a.runner):
            print(line)
    return 1


def _run_checked(script: Path, args, out: Path) -> int:
    """Run a script with check mode on and dumping into `out`; its CheckError ends it (status 1)."""
    from ..compiler.check import CheckError
    env = {"EMBER_CHECK": "fp64", "EMBER_DUMP": str(out)}
    old_env = {k: os.environ.get(k) for k in env}
    old_argv, old_path = sys.argv, list(sys.path)
    os.environ.update(env)
    sys.argv = [str(script)] + list(args)
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
        return 0
    except CheckError:
        return 1
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Inspect what ember.compile did; run passes and codegen on IR files.")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors (any position)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("run", help="run a script with dumping on and summarise (ember-ir run SCRIPT [ARGS...] --out DIR)",
                   add_help=False)
    s = sub.add_parser("show", help="summary of a dump, or one graph's text")
    s.add_argument("dir")
    s.add_argument("--graph", help="graph number (as in the summary) or folder name: print its text")
    s.add_argument("--stage", help="with --graph: a stage's file or name (e.g. kernels, 01_cse.ir, llvm_opt)")
    s.add_argument("--backward", action="store_true", help="the backward graph's stages")
    s.add_argument("--json", action="store_true", help="print report.json")
    o = sub.add_parser("opt", help="run passes on an IR file and print the result")
    o.add_argument("file")
    o.add_argument("--passes", default="", help="comma-separated pass names, e.g. cse,dce")
    o.add_argument("--no-verify", action="store_true", help="do not verify after each pass")
    o.add_argument("--print-after-all", action="store_true", help="print the graph after every pass")
    o.add_argument("-o", "--output", help="write the result here instead of stdout")
    c = sub.add_parser("codegen", help="generated code for an .ir file (passes + fusion) or a .kir file")
    c.add_argument("file")
    c.add_argument("--target", choices=("llvm", "cuda"), default="llvm")
    c.add_argument("--passes", default=None, help="passes before fusion (default: the baseline pipeline)")
    c.add_argument("--opt", action="store_true", help="LLVM: print the optimised IR")
    c.add_argument("--asm", action="store_true", help="LLVM: print host assembly")
    d = sub.add_parser("diff", help="what changed between two IR files, node by node")
    d.add_argument("a")
    d.add_argument("b")
    sub.add_parser("passes", help="list the known passes")
    b = sub.add_parser("bisect", help="name the first pass / fusion decision / kernel that changes an answer")
    b.add_argument("target", help="a dump (or check_repro) folder, or a .py script to run with EMBER_CHECK=fp64")
    b.add_argument("args", nargs="*", help="the script's arguments")
    b.add_argument("--runner", choices=("llvm", "numpy"), default="llvm", help="kernel runner (default llvm)")
    b.add_argument("--out", help="with a script: where to dump (default: a new temporary folder)")
    sub.add_parser("profile", help="run a script under ember.profiler and print the kernel table "
                                   "(ember-ir profile [--sort KEY] [--row-limit N] SCRIPT [ARGS...])", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if argv[:1] not in (["run"], ["profile"]):
        argv = [x for x in argv if x != "--debug"]
    try:
        if argv and argv[0] == "run":
            return cmd_run(argv[1:])
        if argv and argv[0] == "profile":
            return cmd_profile(argv[1:])
        a = _build_parser().parse_args([x for x in argv])
        if a.cmd is None:
            _build_parser().print_help()
            return 2
        if a.cmd == "passes":
            for name, fn in sorted(pass_registry().items()):
                doc = getattr(fn, "doc", "") or (fn.__doc__ or "").strip().split("\n")[0]
                print(f"{name:<16} {doc}")
            return 0
        return {"show": cmd_show, "opt": cmd_opt, "codegen": cmd_codegen, "diff": cmd_diff,
                "bisect": cmd_bisect}[a.cmd](a)
    except ToolError as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {_one_line(e)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
