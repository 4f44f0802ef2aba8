"""The rpbook command: a training round trip, experiments, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys

import pytest

from rpbook.cli import main

QUICK = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "2", "--n-train", "200", "--no-progress",
         "--device", "cpu"]


def test_train_round_trip(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(QUICK + ["--density", "0.1", "--rule", "erk", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "realized density 0.100" in printed and "test accuracy" in printed
    payload = json.loads(out.read_text())
    assert payload["config"]["density"] == 0.1 and payload["config"]["rule"] == "erk"
    assert len(payload["result"]["history"]) == 2
    assert payload["result"]["density"] == pytest.approx(0.1, abs=0.002)
    assert {"name", "shape", "density"} <= set(payload["result"]["layers"][0])
    assert 0.0 <= payload["result"]["test_accuracy"] <= 1.0
    assert payload["provenance"]["device"] == "cpu"
    # the same command gives the same numbers
    out2 = tmp_path / "run2.json"
    main(QUICK + ["--density", "0.1", "--rule", "erk", "--output", str(out2)])
    assert json.loads(out2.read_text())["result"]["history"] == payload["result"]["history"]


def test_dense_run(capsys):
    assert main(QUICK + ["--density", "1.0"]) == 0
    assert "realized density 1.000" in capsys.readouterr().out


def test_checkpoint_and_resume(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(QUICK + ["--checkpoint-dir", str(ckpt)]) == 0
    assert (ckpt / "checkpoint.pt").exists()
    assert main(QUICK + ["--checkpoint-dir", str(ckpt), "--resume"]) == 0
    assert main(QUICK + ["--checkpoint-dir", str(ckpt), "--resume", "--lr", "0.2"]) == 2
    assert "different run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--density", "1.5"], "density must be in (0, 1]"),
        (["--density", "0"], "density must be in (0, 1]"),
        (["--density", "nan"], "--density must be a number, got 'nan'"),
        (["--density", "abc"], "--density must be a number, got 'abc'"),
        (["--width", "0"], "width must be a number > 0, got 0.0"),
        (["--width", "-2"], "width must be a number > 0, got -2.0"),
        (["--rule", "random"], "argument --rule: invalid choice: 'random' (choose from"),
        (["--model", "resnet18"], "argument --model: invalid choice: 'resnet18' (choose from 'mlp'"),
        (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
        (["--optimizer", "lion"], "argument --optimizer: invalid choice: 'lion' (choose from 'sgd', 'adam', 'adamw')"),
        (["--init", "xavier"], "argument --init: invalid choice: 'xavier'"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--epochs", "two"], "--epochs must be an integer, got 'two'"),
        (["--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
        (["--resume"], "--resume needs --checkpoint-dir"),
        (["--device", "cuda"], "CUDA is not available"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path):
    out = tmp_path / "never.json"
    assert main(QUICK + args + ["--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("rpbook: error: ") and message in err
    assert not out.exists()


def test_run_and_list_unknown_experiment(capsys):
    assert main(["run", "no-such-experiment", "--profile", "quick"]) == 2
    assert "unknown experiment 'no-such-experiment'" in capsys.readouterr().err
    assert main(["list", "--results", "/nonexistent-results"]) == 0


def test_console_script_help_documents_every_option():
    env = dict(os.environ, TQDM_DISABLE="1")
    exe = os.path.join(os.path.dirname(sys.executable), "rpbook")
    top = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    assert "train" in top and "run" in top and "list" in top
    help_text = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, env=env, check=True).stdout
    for option in ("--model", "--width", "--dataset", "--density", "--rule", "--dense-first", "--dense-last", "--init",
                   "--optimizer", "--lr", "--epochs", "--batch-size", "--seed", "--device", "--profile", "--output",
                   "--checkpoint-dir", "--resume"):
        assert option in help_text, option


def test_divergence_and_bad_output_exit_2_with_one_line(tmp_path, capsys):
    from rpbook.cli import main

    base = ["train", "--model", "mlp", "--dataset", "digits", "--density", "0.5", "--no-progress", "--epochs", "2"]
    assert main(base + ["--lr", "1e6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rpbook: error:") and "learning rate" in err and "\n" not in err
    assert main(base + ["--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(base + ["--output", str(tmp_path / "missing" / "run.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_version(capsys):
    from rpbook import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"rpbook {__version__}"


def test_choices_are_case_insensitive_and_listed_in_help(capsys):
    from rpbook.cli import make_parser

    args = make_parser().parse_args(["train", "--rule", "ERK", "--model", "MLP"])
    assert (args.rule, args.model) == ("erk", "mlp")
    assert main(["run", "coverage", "--profile", "huge"]) == 2
    assert "invalid choice: 'huge' (choose from 'quick', 'standard', 'full')" in capsys.readouterr().err


def test_run_says_whether_it_loaded_or_ran(tmp_path, capsys):
    results = str(tmp_path / "results")
    args = ["run", "subset_sum_error", "--profile", "quick", "--results", results, "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert ": ran in " in first and "loaded stored result" not in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "loaded stored result (made 20" in second and " on cpu in " in second
    assert "rows (" in second or "values" in second or "entries (" in second, second  # the summary
