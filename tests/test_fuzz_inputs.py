"""Property-based fuzzing: no command line and no cache file ever produces a traceback.

The CLI is fuzzed on its parse-and-validate paths only (`rpbook train --dry-run`,
`rpbook run` with names that are not experiments, `rpbook list`), so nothing trains.
"""
import contextlib
import hashlib
import io
import os
import tempfile

import numpy as np
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rpbook import data as data_module
from rpbook.cli import main
from rpbook.data import DATASET_NAMES
from rpbook.masks import RULES
from rpbook.models import MODEL_NAMES

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

NUMBERS = st.one_of(
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e308", "1e-320", "0", "-0", "0x10", "1_000", "٣", "1,2", "--"]),
)
ANY_TEXT = st.text(max_size=12)
VALUES = {
    "--model": st.one_of(st.sampled_from(MODEL_NAMES), ANY_TEXT),
    "--dataset": st.one_of(st.sampled_from(["digits", "mnist1d", "teacher"]), st.sampled_from(DATASET_NAMES), ANY_TEXT),
    "--rule": st.one_of(st.sampled_from(list(RULES)), ANY_TEXT),
    "--init": st.one_of(st.sampled_from(["unit-scaled", "dense", "sparse"]), ANY_TEXT),
    "--optimizer": st.one_of(st.sampled_from(["sgd", "adam", "adamw"]), ANY_TEXT),
    "--schedule": st.one_of(st.sampled_from(["cosine", "step", "constant"]), ANY_TEXT),
    "--hidden": st.one_of(st.lists(st.integers(-5, 10**12), max_size=4).map(lambda h: ",".join(map(str, h))), ANY_TEXT),
    "--device": st.one_of(st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "mps", "tpu", "cpu:0"]), ANY_TEXT),
    "--profile": st.one_of(st.sampled_from(["quick", "standard", "full"]), ANY_TEXT),
    "--output": st.one_of(st.sampled_from(["", "run.json", "missing/run.json", ".", "/proc/x.json"]), ANY_TEXT),
    "--checkpoint-dir": st.one_of(st.sampled_from(["", "ckpt", "a-file", "missing/deeper"]), ANY_TEXT),
}
for _name in ("--width", "--depth", "--n-train", "--density", "--lr", "--momentum", "--weight-decay",
              "--label-smoothing", "--epochs", "--batch-size", "--seed"):
    VALUES[_name] = NUMBERS
FLAGS = ["--dense-first", "--dense-last", "--repair", "--nesterov", "--resume"]


@contextlib.contextmanager
def in_scratch_folder():
    """Run in an empty folder holding one file, so relative --output/--checkpoint-dir paths touch nothing else."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        open(os.path.join(folder, "a-file"), "w").close()
        os.chdir(folder)
        try:
            yield folder
        finally:
            os.chdir(before)


def exit_code(argv):
    """main's exit code; argparse's own usage errors exit 2 through SystemExit. Any other exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # `rpbook run` sets torch's threads; the other tests must not notice
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
        finally:
            torch.set_num_threads(threads)
    if code == 2 and err.getvalue().startswith("rpbook: error:"):
        assert err.getvalue().count("\n") == 1, err.getvalue()  # exactly one line
    return code


@FUZZ
@given(options=st.dictionaries(st.sampled_from(sorted(VALUES)), st.none(), max_size=8).flatmap(
           lambda keys: st.fixed_dictionaries({k: VALUES[k] for k in keys})),
       flags=st.lists(st.sampled_from(FLAGS), unique=True, max_size=3))
@example(options={"--epochs": "--", "--model": "--"}, flags=[])  # argparse made these empty lists (a TypeError)
@example(options={"--width": "1e300", "--seed": str(2**63)}, flags=[])
def test_train_arguments_never_crash(options, flags):
    argv = ["train", "--dry-run", "--no-progress"]
    for name, value in options.items():
        argv += [f"{name}={value}"]  # the = form: values that start with '-' stay values
    with in_scratch_folder():
        assert exit_code(argv + flags) in (0, 2), argv + flags


@FUZZ
@given(name=ANY_TEXT, seeds=st.lists(NUMBERS, max_size=3), profile=st.one_of(st.none(), ANY_TEXT),
       force=st.booleans())
def test_run_and_list_arguments_never_crash(name, seeds, profile, force):
    from rpbook.experiments import experiment_names

    if name.strip().lower() in experiment_names():
        name = name + "-not-an-experiment"  # a real name would run it
    argv = ["run", f"--results={os.path.join(tempfile.gettempdir(), 'rpbook-fuzz-none')}", "--no-progress"]
    argv += [f"--profile={profile}"] if profile is not None else []
    argv += ["--force"] if force else []
    argv += ["--seeds", *[f"{s}" for s in seeds if not s.startswith("-")]] if seeds else []
    argv += ["--", name]
    with in_scratch_folder():
        assert exit_code(argv) in (0, 2), argv


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(results=ANY_TEXT)
def test_list_never_crashes(results):
    with in_scratch_folder():
        assert exit_code(["list", f"--results={results}"]) in (0, 2)


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.uint8, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["x", "y", "x_test", "y_test", "other"]), ARRAYS, max_size=5),
       raw=st.one_of(st.none(), st.binary(max_size=300)), checksum=st.sampled_from(["match", "wrong", "missing"]))
def test_cache_loader_never_crashes(arrays, raw, checksum):
    with tempfile.TemporaryDirectory() as folder:
        path = data_module.Path(folder) / "mnist1d-seed42-fuzz.npz"
        if raw is None:
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            raw = buf.getvalue()
        path.write_bytes(raw)
        if checksum != "missing":
            digest = hashlib.sha256(raw).hexdigest() if checksum == "match" else "0" * 64
            path.with_name(path.name + ".sha256").write_text(digest)
        loaded, problem = data_module._read_mnist1d_cache(path)
        assert (loaded is None) != (problem == "")
        if loaded is not None:  # only a cache that passes every check is used
            x, y, xt, yt = loaded
            assert x.ndim == 2 and y.ndim == 1 and len(x) == len(y) and y.min() >= 0 and y.max() < 10
