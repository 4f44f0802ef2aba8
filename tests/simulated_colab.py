"""A simulated Colab runtime: run a chapter's Colab twin as a Colab user would, offline.

What is simulated (issue 14):

- Colab's preinstalled packages: a virtualenv under ``_build/colab-sim/`` that
  sees the project's ``.venv`` (torch, numpy, ... as "preinstalled") through a
  ``.pth`` line, with Colab's widget stack installed on top of it:
  ipywidgets 7.7.1, widgetsnbextension 3.6.10, ipython_genutils (installed once,
  then cached). Nothing is ever installed into ``.venv``: pip refuses to touch
  packages outside the environment it runs in.
- ``google.colab``: a stub package imported at kernel start-up (an IPython
  start-up file), so the chapter's first cell takes its Colab branch.
- GitHub: the repository URL in the install cell becomes a local clone source
  (this repository, as committed), and ``/content/rpbook`` a temporary folder.
- Colab's environment: no ``RPBOOK_PROFILE``, ``RPBOOK_RESULTS``,
  ``TQDM_DISABLE`` or ``PYTHONPATH`` pointing at the working tree.

The chapter then clones, ``%pip install``s rpbook from the clone, loads the
stored results of the clone and runs every code cell, the live explorers too.
``run_chapter`` returns the wall time and the package versions seen before and
after, so a test can check that no preinstalled package was upgraded.

Run all chapters (prints one line per chapter)::

    PYTHONPATH=$PWD .venv/bin/python tests/simulated_colab.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "_build" / "colab-sim"
COLAB_PINS = ("ipywidgets==7.7.1", "widgetsnbextension==3.6.10", "ipython_genutils==0.2.0")
KERNEL = "colab-sim"
STUB = '''"""Stub of Colab's google.colab package (simulated Colab runtime of the tests)."""


class _Output:
    def enable_custom_widget_manager(self) -> None:
        pass

    def disable_custom_widget_manager(self) -> None:
        pass


output = _Output()
'''


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def colab_runtime() -> Path:
    """The simulated runtime's Python (created once under ``_build/colab-sim``)."""
    python = SIM / "venv" / "bin" / "python"
    stamp = SIM / "venv" / ".colab-pins"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(COLAB_PINS):
        seen = installed_versions(python)
        if all(seen.get(n.split("==")[0].lower().replace("_", "-")) == n.split("==")[1] for n in COLAB_PINS):
            return python  # a failed run may have upgraded a pin: then the runtime is made again
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(SIM / "venv")], check=True)
    host = _site_packages(Path(sys.executable))
    (_site_packages(python) / "_colab_preinstalled.pth").write_text(f"{host}\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", *COLAB_PINS],
                   check=True)
    # google.colab stub, imported when the kernel starts (as on Colab)
    stub = SIM / "stub" / "google" / "colab"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(STUB)
    startup = SIM / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401  (as Colab does at start-up)\n")
    spec = SIM / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "simulated Colab", "language": "python"}))
    stamp.write_text("\n".join(COLAB_PINS))
    return python


def installed_versions(python: Path) -> dict[str, str]:
    """Distribution name -> version, the first found on the runtime's path (what pip and imports see)."""
    code = ("import importlib.metadata as m, json\nseen = {}\n"
            "for d in m.distributions():\n    n = (d.metadata['Name'] or '').lower().replace('_', '-')\n"
            "    seen.setdefault(n, d.version)\nprint(json.dumps(seen))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                         env=_colab_env(), cwd=SIM)
    return json.loads(out.stdout)


def _colab_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RPBOOK_PROFILE", "RPBOOK_RESULTS", "TQDM_DISABLE", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(SIM / "stub"), IPYTHONDIR=str(SIM / "ipython"), JUPYTER_PATH=str(SIM / "jupyter"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def run_chapter(twin: Path, workdir: Path, *, timeout: int = 600) -> dict:
    """Run the Colab twin ``twin`` top to bottom in the simulated runtime; return timings and versions.

    Raises ``AssertionError`` with the failing cell's error when a cell fails.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    python = colab_runtime()
    nb = nbformat.read(twin, as_version=4)
    content = workdir / "content"
    content.mkdir(parents=True, exist_ok=True)
    install = next(c for c in nb.cells if c.cell_type == "code")
    assert repository_url() in install.source and "/content/rpbook" in install.source, "not a Colab install cell"
    install.source = (install.source.replace(repository_url(), f"file://{ROOT}")
                      .replace("/content/rpbook", str(content / "rpbook")))
    before = installed_versions(python)
    env = _colab_env()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits the client's environment
    try:
        client = NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, skip_cells_with_tag="colab-never",
                                resources={"metadata": {"path": str(content)}})
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as err:
            raise AssertionError(f"{twin.name} failed in the simulated Colab runtime:\n{str(err)[-3000:]}") from None
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    after = installed_versions(python)
    rpbook_file = subprocess.run([str(python), "-c", "import rpbook; print(rpbook.__file__)"], capture_output=True,
                                 text=True, env=_colab_env(), cwd=content).stdout.strip()
    # leave the runtime as Colab starts it: without rpbook (pip only removes what is inside the runtime)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "rpbook"], env=_colab_env(),
                   capture_output=True, cwd=content)
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                        if o.output_type == "stream")
    return {"seconds": seconds, "before": before, "after": after, "rpbook_file": rpbook_file, "outputs": outputs,
            "notebook": nb}


def upgraded(before: dict[str, str], after: dict[str, str], *, ignore: tuple[str, ...] = ("rpbook",)) -> dict:
    """Preinstalled packages whose version changed: name -> (before, after)."""
    return {n: (v, after.get(n)) for n, v in before.items() if n not in ignore and after.get(n) != v}


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(ROOT))
    from rpbook.colab_export import colab_path, toc_notebooks

    for chapter, _ in toc_notebooks(ROOT):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_chapter(colab_path(ROOT, chapter), Path(tmp))
        changed = upgraded(result["before"], result["after"])
        print(f"{chapter.name}: {result['seconds']:.1f} s, upgraded: {changed or 'none'}, "
              f"ipywidgets {result['after'].get('ipywidgets')}, rpbook from {result['rpbook_file']}", flush=True)
