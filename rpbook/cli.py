"""The ``rpbook`` command: ``train`` one sparse network, ``run`` an experiment, ``list`` experiments.

Chapter 1 (*How to run this book*) shows it. Bad input ends with exit code 2
and a one-line message naming the bad value and what is allowed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from typing import Sequence

from .config import PROFILE_DESCRIPTIONS, PROFILES, get_profile

# Defaults the profile sets for `rpbook train` when --epochs / --n-train are not given.
TRAIN_PROFILE_DEFAULTS = {
    "quick": {"epochs": 1, "n_train": 256},
    "standard": {"epochs": 20, "n_train": None},
    "full": {"epochs": 100, "n_train": None},
}


class UsageError(ValueError):
    """Bad command-line input: reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's errors (an invalid choice, a missing argument) as one line with exit code 2, like ours."""

    def error(self, message: str):
        raise UsageError(message)


def _parse_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name} must be a number, got {text!r}") from None
    if math.isnan(value):
        raise UsageError(f"{name} must be a number, got {text!r}")
    if math.isinf(value):
        raise UsageError(f"{name} must be a finite number, got {text!r}")
    return value


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {text!r}") from None


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    from .data import DATASET_NAMES
    from .init import INIT_METHODS
    from .masks import ALL_RULES as RULES
    from .models import MODEL_NAMES
    from .train import OPTIMIZERS, SCHEDULES

    p = sub.add_parser(
        "train", help="train one random sparse (or dense) network",
        description="Train one network inside a random ER mask and write a JSON report "
                    "(config, per-layer realized densities, history, test accuracy).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="mlp", type=str.lower, choices=MODEL_NAMES, help="architecture")
    g.add_argument("--width", default="1.0", help="width multiplier (> 0) of every hidden layer")
    g.add_argument("--hidden", default=None, help="MLP hidden sizes, comma separated, e.g. 300,100")
    g.add_argument("--depth", default=None, help="MLP hidden layers (100 units each) or ConvNet depth (2, 4, 6)")
    g.add_argument("--dataset", default="mnist1d", type=str.lower, choices=DATASET_NAMES, help="data set")
    g.add_argument("--n-train", default=None, help="use only this many training examples (default: the profile's)")
    g = p.add_argument_group("mask")
    g.add_argument("--density", default="0.1", help="fraction of weights kept, in (0, 1]; 1.0 trains the dense network")
    g.add_argument("--rule", default="erk", type=str.lower, choices=RULES, help="layer-wise density rule")
    g.add_argument("--dense-first", action="store_true", help="keep the first layer dense (paid from the same budget)")
    g.add_argument("--dense-last", action="store_true", help="keep the last layer dense (paid from the same budget)")
    g.add_argument("--repair", nargs="?", const="swap", default=False, choices=("swap", "add"),
                   help="give isolated units one connection: swap (default; the count is kept) or add (the count grows)")
    g.add_argument("--init", default="unit-scaled", type=str.lower, choices=INIT_METHODS, help="initialisation")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default="sgd", type=str.lower, choices=OPTIMIZERS, help="optimizer")
    g.add_argument("--lr", default="0.05", help="peak learning rate (> 0)")
    g.add_argument("--momentum", default="0.9", help="SGD momentum")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    g.add_argument("--weight-decay", default="5e-4", help="weight decay")
    g.add_argument("--schedule", default="cosine", type=str.lower, choices=SCHEDULES, help="learning-rate schedule")
    g.add_argument("--label-smoothing", default="0.0", help="label smoothing in [0, 1)")
    g.add_argument("--epochs", default=None, help="epochs (>= 1; default: the profile's)")
    g.add_argument("--batch-size", default="128", help="mini-batch size (>= 1)")
    g.add_argument("--seed", default="0", help="seed of mask, init, data split and shuffling")
    g = p.add_argument_group("running")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--profile", default=None, choices=PROFILES, help="default: $RPBOOK_PROFILE or standard")
    g.add_argument("--output", default=None, help="write the JSON report to this file")
    g.add_argument("--checkpoint-dir", default=None, help="write a checkpoint here after every epoch")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.add_argument("--dry-run", action="store_true",
                   help="check every option (and the model's size) and exit without loading data or training")


def _build_run(args: argparse.Namespace):
    from .experiments.sparse_run import SparseRun
    from .train import TrainConfig

    profile = get_profile(args.profile)
    defaults = TRAIN_PROFILE_DEFAULTS[profile]
    epochs = _parse_int("--epochs", args.epochs) if args.epochs is not None else defaults["epochs"]
    n_train = _parse_int("--n-train", args.n_train) if args.n_train is not None else defaults["n_train"]
    hidden = None
    if args.hidden is not None:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        except ValueError:
            raise UsageError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
        if not hidden:
            raise UsageError(f"--hidden must list at least one layer size, e.g. 300,100, got {args.hidden!r}")
        if any(h < 1 for h in hidden):
            raise UsageError(f"--hidden sizes must be >= 1, got {args.hidden!r}")
    train = TrainConfig(
        epochs=epochs, batch_size=_parse_int("--batch-size", args.batch_size), optimizer=args.optimizer.lower(),
        lr=_parse_float("--lr", args.lr), momentum=_parse_float("--momentum", args.momentum), nesterov=args.nesterov,
        weight_decay=_parse_float("--weight-decay", args.weight_decay), schedule=args.schedule.lower(),
        label_smoothing=_parse_float("--label-smoothing", args.label_smoothing),
    )
    return SparseRun(
        model=args.model.lower(), dataset=args.dataset.lower(), width=_parse_float("--width", args.width),
        hidden=hidden, depth=_parse_int("--depth", args.depth) if args.depth is not None else None,
        density=_parse_float("--density", args.density), rule=args.rule.lower(), dense_first=args.dense_first,
        dense_last=args.dense_last, repair=args.repair, init=args.init.lower(), n_train=n_train,
        seed=_parse_int("--seed", args.seed), train=train,
    ), profile


def _check_output(text: str) -> None:
    """``--output`` must name a file in an existing folder we can write to: checked before training, not after."""
    if not text.strip():
        raise UsageError(f"--output must name a file such as run.json, got {text!r}")
    out = os.path.abspath(text)
    if os.path.isdir(out):
        raise UsageError(f"--output {text!r} is a folder; give a file name such as run.json")
    folder = os.path.dirname(out)
    if not os.path.isdir(folder):
        raise UsageError(f"--output {text!r}: the folder {folder!r} does not exist")
    try:  # the only sure test of writability (permissions, read-only mounts, ACLs)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".rpbook-write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"--output {text!r}: cannot write to the folder {folder!r} ({err.strerror or err})") from None


def _check_checkpoint_dir(text: str, resume: bool) -> None:
    """The checkpoint folder's state must fit ``--resume``: refuse before loading data or training."""
    from .train import CHECKPOINT_FILE

    if not text.strip():
        raise UsageError(f"--checkpoint-dir must name a folder, got {text!r}")
    folder = os.path.abspath(text)
    path = os.path.join(folder, CHECKPOINT_FILE)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--checkpoint-dir {text!r} is a file, not a folder; give a folder for the checkpoints")
    if resume and not os.path.isfile(path):
        what = "does not exist" if not os.path.exists(folder) else f"holds no {CHECKPOINT_FILE}"
        raise UsageError(f"--resume: the checkpoint folder {text!r} {what}; check the path, or drop --resume to start a new run")
    if not resume and os.path.exists(path):
        raise UsageError(f"--checkpoint-dir {text!r} already holds a checkpoint; add --resume to continue that run, "
                         f"or give another --checkpoint-dir (or delete {path!r} to start over)")


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import choose_device
    from .data import dataset_shape
    from .experiments.sparse_run import check_model_size, train_sparse
    from .results import provenance, to_jsonable, write_json_atomic

    # Every check before any data is read or any weight allocated.
    run, profile = _build_run(args)
    device = choose_device(args.device)
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir")
    if args.checkpoint_dir is not None:
        _check_checkpoint_dir(args.checkpoint_dir, args.resume)
    if args.output is not None:
        _check_output(args.output)
    size = check_model_size(run, *dataset_shape(run.dataset))
    if args.dry_run:
        print(f"rpbook: options valid; would train {run.model} ({size:,} parameters) on {run.dataset} at density "
              f"{run.density:g}, {run.train.epochs} epoch(s), profile {profile}, device {device}")
        return 0
    report = train_sparse(run, device=device, checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                          progress=not args.no_progress)
    print(f"model {run.model} (width {run.width:g}) on {run.dataset}, rule {run.rule}, device {device}")
    for layer in report["layers"]:
        shape = "×".join(map(str, layer["shape"]))
        print(f"  {layer['name']:<24} {shape:>16}  density {layer['density']:.3f}")
    acc = report["test_accuracy"]
    acc_text = f"{acc:.4f}" if acc is not None else "n/a (regression)"
    print(f"realized density {report['density']:.3f} | nonzero weights {report['nonzero']:,} of {report['params']:,} "
          f"| test loss {report['test_loss']:.4f} | test accuracy {acc_text} | {report['wall_time_s']:.1f} s")
    if args.output is not None:
        payload = {"config": to_jsonable(run), "result": report,
                   "provenance": provenance(device=str(device), wall_time=report["wall_time_s"], profile=profile, seeds=[run.seed])}
        write_json_atomic(args.output, payload)
        print(f"wrote {args.output}")
    return 0


def summarize_result(result: object, *, max_lines: int = 8) -> list[str]:
    """A few lines saying what a stored result holds: its fields, rows and columns (chapter 1, *Stored results*)."""
    if not isinstance(result, dict):
        return [f"result: {type(result).__name__}"]
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = ", ".join(list(value[0])[:6]) + (", ..." if len(value[0]) > 6 else "")
            lines.append(f"{key}: {len(value)} rows ({columns})")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key}: {len(value)} values")
        elif isinstance(value, dict):
            lines.append(f"{key}: {len(value)} entries ({', '.join(map(str, list(value)[:4]))}{', ...' if len(value) > 4 else ''})")
        elif isinstance(value, float):
            lines.append(f"{key}: {value:.4g}")
        else:
            lines.append(f"{key}: {str(value)[:60]}")
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... and {len(lines) - max_lines} more fields"]
    return lines


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    import torch

    from .config import check_seeds
    from .experiments import get_experiment, run_experiment
    from .experiments.executors import UnitFailedError, make_executor, parse_executor_options
    from .results import ResultStore

    seeds = [_parse_int("--seeds", s) for s in args.seeds] if args.seeds else None
    workers = _parse_int("--workers", args.workers) if args.workers is not None else None
    threads = _parse_int("--threads", args.threads)
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    options = parse_executor_options(args.executor_option)
    make_executor(args.executor, options, workers)  # a bad executor, option or --workers fails before any work
    store = ResultStore(args.results) if args.results else ResultStore()
    torch.set_num_threads(threads)
    profile = get_profile(args.profile)
    config = get_experiment(args.name).config(profile)
    if seeds is not None:
        config = dataclasses.replace(config, seeds=check_seeds(seeds))
    stored = not args.force and store.has(args.name, config)  # decided before: a run stores its result too
    started = time.perf_counter()
    try:
        record = run_experiment(args.name, profile, config=config, force=args.force, store=store,
                                progress=not args.no_progress, device=args.device, executor=args.executor,
                                executor_options=options, workers=workers)
    except UnitFailedError as err:
        print(f"rpbook: error: {err}", file=sys.stderr)
        print("rpbook: no result stored; finished units are kept and a rerun resumes", file=sys.stderr)
        return 1
    prov = record["provenance"]
    if stored:
        how = (f"loaded stored result (made {prov['date']} on {prov['device']} in {prov['wall_time_s']:.1f} s)")
    else:
        how = f"ran in {time.perf_counter() - started:.1f} s on {prov['device']}"
    print(f"{args.name} [{prov['profile']}] config {record['config_hash']}: {how}")
    for line in summarize_result(record["result"]):
        print(f"  {line}")
    print(f"  -> {store.path(args.name, record['config'])}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .dst import DST_METHODS
    from .experiments import experiment_names, get_experiment
    from .masks import RULE_REGISTRY
    from .pruning import SCORE_FUNCTIONS
    from .results import ResultStore

    # The registries: what `--rule` accepts and what an experiment may name (CONTRIBUTING.md adds to them).
    print("layer-wise rules: " + ", ".join(f"{n} ({r.label})" for n, r in RULE_REGISTRY.items()))
    print("pruning scores: " + ", ".join(SCORE_FUNCTIONS))
    print("DST methods: " + ", ".join(f"{n} ({c.label})" for n, c in DST_METHODS.items()))
    store = ResultStore(args.results) if args.results else ResultStore()
    names = experiment_names()
    if not names:
        print("no experiments yet")
        return 0
    print(f"results in {store.root}")
    for name in names:
        exp = get_experiment(name)
        print(f"{name}  (chapter {exp.chapter}) — {exp.description}")
        for profile in PROFILES:
            config = exp.config(profile)
            if store.has(name, config):
                try:  # a damaged file is reported and the listing goes on
                    prov = store.load(name, config)["provenance"]
                    status = f"stored, {prov.get('wall_time_s', 0):.0f} s on {prov.get('device')}, {prov.get('date')}"
                except ValueError as err:
                    status = f"DAMAGED ({err}); `rpbook run {name} --profile {profile} --force` replaces it"
            else:
                status = "not stored"
            print(f"    {profile:<9} {status}")
    return 0


def _format_value(x: object) -> str:
    return f"{x:.6g}" if isinstance(x, float) else repr(x)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .experiments import experiment_names, verify_stored
    from .results import ResultStore

    store = ResultStore(args.results) if args.results else ResultStore()
    known = experiment_names()
    names = args.names or known
    for name in names:  # every name checked before any work starts
        if name not in known:
            raise UsageError(f"unknown experiment {name!r}; allowed: {', '.join(known)}")
    damaged: list = []
    paths = [r["_path"] for name in names for r in store.records(name, damaged=damaged)]
    for path, message in damaged:
        print(f"DAMAGED {path}: {message}")
    if not paths:
        print(f"no stored results for {', '.join(names)} in {store.root}")
        return 1 if damaged else 0
    failed = bool(damaged)
    rows = []
    for path in paths:
        v = verify_stored(path, device=args.device, progress=not args.no_progress, record_if_exact=args.record_if_exact)
        counts = v.counts()
        mode = "same numeric environment: exact expected" if v.exact_expected else "other numeric environment: declared tolerances"
        verdict = "OK" if v.ok else "DIFFERS"
        print(f"{verdict:<8}{v.experiment} ({path}) — {mode}; regenerated in {v.wall_time_s:.1f} s")
        print(f"        fields: {counts['exact']} exact, {counts['within']} within tolerance, {counts['differs']} differ")
        for c in v.worst(args.worst):
            diff = c.difference
            tol = c.tolerance.describe() if c.tolerance else "none"
            print(f"        {c.verdict:<7} {c.path}: stored {_format_value(c.stored)}, regenerated {_format_value(c.regenerated)}"
                  + (f", |diff| {diff:.3g} (tolerance {tol})" if diff is not None else ""))
        failed |= not v.ok
        rows.append({"experiment": v.experiment, "path": path, "exact_expected": v.exact_expected, "ok": v.ok,
                     "counts": counts, "stored_env": v.stored_env, "regenerated_env": v.regenerated_env,
                     "worst": [{"path": c.path, "stored": c.stored, "regenerated": c.regenerated, "verdict": c.verdict,
                                "difference": c.difference, "tolerance": c.tolerance.describe() if c.tolerance else None}
                               for c in v.worst(args.worst)]})
    if args.json:
        from .results import write_json_atomic

        write_json_atomic(args.json, rows)
    return 1 if failed else 0


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rpbook`` command (chapter 1)."""
    from . import __version__

    parser = _Parser(
        prog="rpbook",
        description="Train random sparse networks and regenerate the book's stored results.",
        epilog="Profiles: " + "; ".join(f"{k}: {v}" for k, v in PROFILE_DESCRIPTIONS.items()),
    )
    parser.add_argument("--version", action="version", version=f"rpbook {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    p = sub.add_parser("run", help="run an experiment (or load its stored result) at a profile",
                       description="Regenerate a stored experiment result from its own config, on this machine's "
                                   "cores or on a SLURM cluster.",
                       epilog="Examples: rpbook run rule_seed_spread --profile standard --force --executor local; "
                              "rpbook run rule_density_sweep --profile full --executor slurm --executor-option "
                              "partition=gpu --executor-option gpus_per_node=1 --executor-option timeout_min=600")
    p.add_argument("name", help="experiment name (see `rpbook list`)")
    p.add_argument("--profile", default=None, choices=PROFILES, help="default: $RPBOOK_PROFILE or standard")
    p.add_argument("--force", action="store_true", help="rerun even if a result is stored (it is replaced only on success)")
    p.add_argument("--seeds", nargs="+", default=None, help="replace the preset's seeds, e.g. --seeds 0 1 2")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    p.add_argument("--results", default=None, help="results folder (default: book/_results)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g = p.add_argument_group(
        "where the units of the sweep run",
        "The numbers are the same whatever the executor (same code, same config, same torch threads per process); "
        "finished units are kept as they finish, so an interrupted sweep resumes. The default (auto, or "
        "$RPBOOK_EXECUTOR) runs the first unit here and the rest on a local pool when more than one core (or GPU) "
        "is free and they would take more than a few seconds.")
    g.add_argument("--executor", default=None, metavar="{auto,serial,local,slurm}",
                   help="serial: one unit after another here; local: a pool of processes on this machine (one per "
                        "core, or one per GPU); slurm: one SLURM job per unit through submitit "
                        "(pip install 'rpbook[cluster]')")
    g.add_argument("--executor-option", action="append", default=None, metavar="KEY=VALUE",
                   help="slurm only, repeatable: partition=gpu, timeout_min=600 (default 240), gpus_per_node=1, "
                        "cpus_per_task=4, mem_gb=16, array_parallelism=16, account=..., qos=..., constraint=..., "
                        "folder=DIR for logs (default rpbook-slurm), cluster=local to try the job path here")
    g.add_argument("--workers", default=None,
                   help="local: number of worker processes (default: cores / threads, or one per GPU); "
                        "slurm: at most this many jobs at once")
    g.add_argument("--threads", default="1",
                   help="torch CPU threads of this process and of every worker (results depend on it; the stored "
                        "results were made with 1)")
    p = sub.add_parser("list", help="list the registered rules, scores and DST methods, the experiments, "
                                        "their profiles, and which results are stored")
    p.add_argument("--results", default=None, help="results folder (default: book/_results)")
    p = sub.add_parser("verify", help="regenerate stored results and compare them with the stored ones",
                       description="Regenerate stored results from their own configs (in a temporary folder; the "
                                   "stored files are not touched) and print, per result, how many fields came out "
                                   "exact, within the experiment's declared tolerance, or different, with the largest "
                                   "differences. Exact is expected on the numeric environment (CPU capability, BLAS, "
                                   "threads, torch) the result recorded. Exit code 1 if any field differs.")
    p.add_argument("names", nargs="*", metavar="EXPERIMENT", help="experiments to verify (default: all)")
    p.add_argument("--results", default=None, help="results folder (default: book/_results)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"], help="device to regenerate on")
    p.add_argument("--worst", type=int, default=3, help="how many of the largest differences to print per result")
    p.add_argument("--json", default=None, help="also write the verdicts to this JSON file")
    p.add_argument("--record-if-exact", action="store_true",
                   help="when every value regenerates exactly, store the regenerated record (records its numeric environment)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _list_options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The options of ``command`` that take several values (nargs ``*``/``+``, or repeatable)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest for a in sub._actions
            if a.nargs in ("*", "+") or isinstance(a, (argparse._AppendAction, argparse._ExtendAction))}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rpbook`` command."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        for key, value in vars(args).items():  # argparse turns "--epochs=--" into an empty list
            if isinstance(value, list) and key not in _list_options(parser, args.command):
                print(f"rpbook: error: --{key.replace('_', '-')} needs a value", file=sys.stderr)
                return 2
        return {"train": _cmd_train, "run": _cmd_run, "list": _cmd_list, "verify": _cmd_verify}[args.command](args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"rpbook: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --output names a folder or an unwritable place
        print(f"rpbook: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rpbook: interrupted; finished units and checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
