"""Every ember source file over the soft size limit is listed, with its reason, in scripts/file_sizes.py
(and docs/file-sizes.md): a file may only grow past the limit deliberately."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import file_sizes  # noqa: E402


def test_files_over_the_soft_limit_are_listed():
    unlisted = [f"{f} ({n} lines)" for n, f in file_sizes.over_limit() if f not in file_sizes.EXCEPTIONS]
    assert not unlisted, (f"over {file_sizes.LIMIT} lines and not in scripts/file_sizes.py EXCEPTIONS "
                          f"(split it, or list it with a reason): {unlisted}")


def test_the_exception_list_only_names_large_files():
    stale = [f for f in file_sizes.EXCEPTIONS if f not in {f for _, f in file_sizes.over_limit()}]
    assert not stale, f"listed as over the limit but no longer are (drop them): {stale}"
