"""rpbook: the package behind the book *Why random pruning works*.

Each module owns one idea of the book (the module table in README.md; how to
extend it in CONTRIBUTING.md); every public function names the chapter or the
section of the appendix *Formulas and notation* that teaches it.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("rpbook")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
