import os
import sys
import tempfile

# compiled kernels (LLVM runner tests) go to a private cache
os.environ.setdefault("EMBER_CACHE_DIR", tempfile.mkdtemp(prefix="ember-passes-cache-"))
os.environ.setdefault("EMBER_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(__file__))
