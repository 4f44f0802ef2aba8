"""requirements.txt, environment.yml and pyproject.toml agree with the pins the project relies on."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(text):
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def names(reqs):
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def env_pip_lines():
    text = (ROOT / "environment.yml").read_text()
    block = text.split("- pip:", 1)[1]
    return [line.strip()[2:].strip() for line in block.splitlines() if line.strip().startswith("- ")]


def test_environment_yml_lists_the_same_packages_and_pins():
    reqs = requirement_lines((ROOT / "requirements.txt").read_text())
    env = env_pip_lines()
    assert names(reqs) == names(env)
    assert sorted(reqs) == sorted(env)


def test_local_pins_and_colab_ranges():
    reqs = requirement_lines((ROOT / "requirements.txt").read_text())
    assert "torch==2.13.0" in reqs
    assert "jupyter-book>=1.0.4.post1,<2" in reqs
    assert not any(r.lower().startswith("torchvision") for r in reqs)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    torch_dep = [d for d in deps if d.startswith("torch")]
    assert torch_dep == ["torch>=2.1"], "Colab must keep its own torch: ask only for a range"
    assert not any(d.startswith("torchvision") for d in deps)
    assert project["scripts"]["rpbook"] == "rpbook.cli:main"
