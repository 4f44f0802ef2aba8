"""A chapter runs top to bottom in a simulated Colab runtime (issue 14; see tests/simulated_colab.py).

Colab's widget stack (ipywidgets 7.7.1), a stub ``google.colab``, the
repository cloned from this working copy instead of GitHub: the chapter's
Colab twin must install rpbook without upgrading any preinstalled package,
load the stored results of the clone, and build its live explorers.
One chapter here (the one with the most explorers); `python tests/simulated_colab.py`
runs them all.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simulated_colab import ROOT, run_chapter, upgraded

CHAPTER = ROOT / "book" / "_colab" / "02_er_masks_as_graphs.ipynb"


@pytest.mark.skipif(shutil.which("git") is None, reason="the install cell clones with git")
def test_chapter_runs_in_simulated_colab_without_upgrading_anything(tmp_path):
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "rpbook", "pyproject.toml"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        pytest.skip(f"the simulation clones the committed repository; uncommitted changes: {dirty.splitlines()[:3]}")
    # A short per-cell timeout: nbclient sometimes waits a whole timeout on a cell that draws an
    # ipywidgets `interact` panel before it sees the cell finish (then it goes on normally), so a
    # long timeout only makes that rare stall long. Every cell of this chapter takes seconds.
    result = run_chapter(CHAPTER, tmp_path, timeout=90)
    assert not upgraded(result["before"], result["after"]), "the Colab install cell upgraded a preinstalled package"
    assert result["after"]["ipywidgets"] == "7.7.1"
    # rpbook came from the clone, installed into the Colab runtime, and found the clone's stored results
    assert "/colab-sim/venv/" in result["rpbook_file"], result["rpbook_file"]
    assert "rpbook profile: standard" in result["outputs"]
    # the live explorers ran (they are skipped in the HTML build, not on Colab) and made ipywidgets 7 widgets
    live = [c for c in result["notebook"].cells if c.cell_type == "code" and re.search(r"\b\w+_explorer\(\)", c.source)]
    assert live, "the chapter has no live explorer"
    for cell in live:
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs), cell.source
