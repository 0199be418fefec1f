import atexit
import os
import shutil
import sys
import tempfile

# compiled kernels (LLVM runner tests) go to a private cache, removed when the run ends
if "EMBER_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="ember-passes-cache-")
    os.environ["EMBER_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("EMBER_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(__file__))
