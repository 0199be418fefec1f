"""Saving to one path from many threads: every save renames a whole file; killed saves' temp files are cleaned."""
import os
import subprocess
import sys
import threading
import time

import numpy as np

import ember
from ember.serialization import files


def _payload(who, step):
    return {"who": who, "step": step, "w": ember.full((2048,), float(who * 1000 + step))}


def _consistent(obj):
    w = obj["w"].numpy()
    return w.shape == (2048,) and np.all(w == obj["who"] * 1000 + obj["step"])


def test_threads_saving_to_one_path_never_corrupt_it_or_raise(tmp_path):
    target = tmp_path / "ckpt.pt"
    ember.save(_payload(99, 0), target)
    errors, loads = [], []
    stop = threading.Event()

    def writer(who):
        try:
            for step in range(8):
                ember.save(_payload(who, step), target)
        except Exception as e:              # any error is a failure of the test
            errors.append(e)

    def reader():
        while not stop.is_set():
            try:
                obj = ember.load(target)
                loads.append(_consistent(obj))
            except Exception as e:
                errors.append(e)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    r = threading.Thread(target=reader)
    r.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    r.join()
    assert errors == []
    assert loads and all(loads)
    final = ember.load(target)
    assert _consistent(final) and final["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    host, me = files._host(), os.getpid()
    dead = _dead_pid()
    names = {
        "dead": f".m.pt.{host}.{dead}.aaaa.tmp",               # its process is gone: stale
        "mine": f".m.pt.{host}.{me}.bbbb.tmp",                 # this process, not being written: stale
        "alive": f".m.pt.{host}.{os.getppid()}.cccc.tmp",      # a live process may still rename it
        "far_old": ".m.pt.otherhost.123.dddd.tmp",             # another host, two days old: stale
        "far_new": ".m.pt.otherhost.124.eeee.tmp",             # another host, fresh: kept
        "other": f".n.pt.{host}.{dead}.ffff.tmp",              # another target's: not ours to judge
    }
    for n in names.values():
        (tmp_path / n).write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["far_old"], (old, old))
    ember.save({"a": ember.ones(2)}, tmp_path / "m.pt")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"m.pt", names["alive"], names["far_new"], names["other"]}


def test_save_through_a_symlink_replaces_the_target(tmp_path):
    real = tmp_path / "real.pt"
    ember.save(ember.zeros(2), real)
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    ember.save(ember.ones(2), link)
    assert link.is_symlink() and ember.load(real).tolist() == [1.0, 1.0]
