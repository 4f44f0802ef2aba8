"""rpbook: the package behind the book *Why random pruning works*.

Each module owns one idea of the book (see ``DESIGN.md``); every public
function names the chapter that teaches it.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("rpbook")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
