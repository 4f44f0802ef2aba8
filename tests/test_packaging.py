"""requirements.txt, environment.yml and pyproject.toml agree with the pins the project relies on."""
import re
import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# Lower bounds of what Colab has preinstalled (its runtime of 2025; newer runtimes have newer versions).
# A floor above one of these would make pip upgrade the package on Colab (issue 14).
COLAB_VERSIONS = {"ipywidgets": "7.7.1", "numpy": "2.0.2", "scipy": "1.14.1", "scikit-learn": "1.6.1",
                  "matplotlib": "3.10.0", "networkx": "3.4.2", "tqdm": "4.67.1", "torch": "2.6.0"}


def requirement_lines(text):
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def names(reqs):
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def environment():
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [d for d in deps if isinstance(d, str) and not d.startswith(("python=", "pip"))]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    return conda, pip


def test_environment_yml_lists_the_same_packages_and_installs_rpbook():
    reqs = requirement_lines((ROOT / "requirements.txt").read_text())
    conda, pip = environment()
    assert "-e ." in pip, "environment.yml must install rpbook itself"
    conda_as_pip = [re.sub(r"^pytorch", "torch", c) for c in conda]
    listed = conda_as_pip + [p for p in pip if p != "-e ."]
    assert names(listed) == names(reqs)
    # the same floors everywhere; torch is conda-forge's CPU build (the pip pin is a local wheel)
    by_name = {n: r for r in reqs for n in names([r])}
    for spec in listed:
        (name,) = names([spec])
        if name != "torch":
            assert spec == by_name[name], f"environment.yml {spec!r} vs requirements.txt {by_name[name]!r}"
    torch = next(c for c in conda if c.startswith("pytorch"))
    assert torch.endswith("=cpu_*"), "environment.yml: pick conda-forge's CPU build of PyTorch"


def test_local_pins_and_colab_ranges():
    reqs = requirement_lines((ROOT / "requirements.txt").read_text())
    assert "torch==2.13.0" in reqs
    assert "jupyter-book>=1.0.4.post1,<2" in reqs
    assert "jupyterlab>=4" in reqs, "the README's `jupyter lab book/` needs JupyterLab"
    assert not any(r.lower().startswith("torchvision") for r in reqs)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    torch_dep = [d for d in deps if d.startswith("torch")]
    assert torch_dep == ["torch>=2.1"], "Colab must keep its own torch: ask only for a range"
    assert not any(d.startswith("torchvision") for d in deps)
    assert project["scripts"]["rpbook"] == "rpbook.cli:main"


def test_floors_keep_colabs_preinstalled_packages():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = dep.name.lower()
        if name in COLAB_VERSIONS:
            assert SpecifierSet(str(dep.specifier)).contains(COLAB_VERSIONS[name]), (
                f"{dep} would upgrade Colab's {name} {COLAB_VERSIONS[name]}")


def test_extras_cover_requirements_txt():
    """requirements.txt = the package's dependencies + every extra but [vision] (pinned locally)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"book", "test"} <= set(extras)
    reqs = requirement_lines((ROOT / "requirements.txt").read_text())
    local = set().union(*(names(extras[k]) for k in extras if k != "vision"))  # vision: not beside the CPU torch
    assert names(project["dependencies"]) | local == names(reqs)


def test_license_covers_code_and_text():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "CC BY 4.0" in text
    readme = (ROOT / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme
    footer = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    assert "MIT" in footer and "CC BY 4.0" in footer
