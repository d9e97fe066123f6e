"""``housing-train``: train the models, log them to MLflow, register the best, write the fallback.

Every setting is a flag; unset flags fall back to the environment, then config/mlflow_config.yaml,
then the built-in defaults (``config.settings``). Progress goes to stderr, the result table to
stdout (``--json`` prints the TrainingResult as JSON instead). Exit status: 0 on success, 1 when
training fails (one line on stderr, e.g. the tracking server is down), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config.runtime import configure_logging
from config.settings import (
    PROJECT_ROOT,
    Settings,
    SettingsError,
    add_settings_arguments,
    load_settings,
    settings_from_args,
)
from training.announce import announce_promotion
from training.data import DEFAULT_DATA_PATH, DataError
from training.pipeline import FLAVOURS, MODEL_KINDS, parse_kinds
from training.register import train_and_register
from training.results import TrainingConfig, TrainingError, TrainingResult

logger = logging.getLogger(__name__)

_SETTING_KEYS = ("mlflow.tracking_uri", "model.name", "model.fallback_path", "log_level")


def _current_settings() -> Settings | None:
    # Only to show the effective defaults in --help; a bad environment is reported later, properly.
    try:
        return load_settings()
    except SettingsError:
        return None


def build_parser() -> argparse.ArgumentParser:
    """The CLI parser (flags documented with their effective defaults)."""
    current = _current_settings()
    parser = argparse.ArgumentParser(
        prog="housing-train",
        description="Train LinearRegression, DecisionTree, RandomForest and HistGradientBoosting pipelines on "
                    "the California housing data, log them to MLflow, register the best by RMSE "
                    "(alias challenger, stage Staging; --promote: champion, Production) and write "
                    "the fallback model file.",
    )
    add_settings_arguments(parser, keys=_SETTING_KEYS)
    effective = current.as_dict() if current else {}
    for action in parser._actions:  # readable metavars, and the value each flag would default to
        if action.dest.startswith("setting__"):
            key = action.dest[len("setting__"):].replace("__", ".")
            action.metavar = action.option_strings[-1].lstrip("-").upper().replace("-", "_")
            if key in effective:
                action.help = f"{action.help or ''}; now {effective[key]}".lstrip("; ")
    parser.add_argument(
        "--experiment", dest="setting__experiment__training_name", default=None, metavar="EXPERIMENT",
        help="training experiment (env MLFLOW_TRAINING_EXPERIMENT); now "
             f"{current.experiment.training_name if current else 'california_housing'}",
    )
    parser.add_argument("--data", default=DEFAULT_DATA_PATH, help="housing CSV (default %(default)s)")
    parser.add_argument("--models", default=None,
                        help=f"comma list of model kinds to train (default all: {','.join(MODEL_KINDS)}; "
                             "also accepts linear, tree, rf, hgb)")
    parser.add_argument("--promote", action="store_true",
                        help="also give the new version alias champion and stage Production")
    parser.add_argument("--announce", action=argparse.BooleanOptionalAction, default=None,
                        help="publish the promotion on the model-updates topic so running scorers switch now "
                             "(default: with --promote; a broker that does not answer is a warning, not a failure)")
    parser.add_argument("--output-dir", default=None,
                        help="directory for model.pkl, model.json and reference_profile.json (default: the "
                             "directory of the fallback path, "
                             f"{current.model.fallback_path if current else 'models/model.pkl'})")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="train on a seeded sample of N rows (fast runs and tests)")
    parser.add_argument("--seed", type=int, default=42, help="split/sample/model seed (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenMP/BLAS threads while fitting (default %(default)s: fastest on 2 cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return parser


def _resolve_data_path(path: str) -> str:
    # The default is relative to the repo; let the command work from any directory.
    if not Path(path).exists() and path == DEFAULT_DATA_PATH and (PROJECT_ROOT / path).exists():
        return str(PROJECT_ROOT / path)
    return path


def format_table(result: TrainingResult) -> str:
    """The human summary: one line per model, then what was registered and written."""
    lines = [f"{'model':<24}{'flavour':<10}{'rmse':>10}{'mae':>10}{'r2':>8}{'fit s':>8}  run"]
    for r in sorted(result.results, key=lambda r: r.metrics["rmse"]):
        mark = " *" if r.kind == result.best_kind else ""
        lines.append(f"{r.kind:<24}{FLAVOURS.get(r.kind, 'sklearn'):<10}{r.metrics['rmse']:>10,.0f}"
                     f"{r.metrics['mae']:>10,.0f}{r.metrics['r2']:>8.4f}{r.fit_seconds:>8.1f}  {r.run_id}{mark}")
    lines += [
        "",
        f"registered {result.model_name} version {result.version} ({result.best_kind}): "
        f"alias {', '.join(result.aliases)}; stage {result.stage}"
        + ("" if result.promoted else " (not promoted: rerun with --promote to make it champion)"),
        f"model uri  {result.model_uri}   run {result.run_id}",
        f"fallback   {result.fallback_path} (+ {Path(result.metadata_path).name}, "
        f"{Path(result.profile_path).name})",
        f"tracking   {result.tracking_uri}  (experiment run {result.parent_run_id})",
        f"took       {result.seconds:.1f} s on {result.n_train} train / {result.n_test} test rows",
    ]
    if result.archived_versions:
        lines.append(f"archived   version(s) {', '.join(result.archived_versions)} (were Production)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        kinds = parse_kinds(args.models)
        if args.sample is not None and args.sample < 10:
            raise ValueError(f"--sample must be at least 10 rows, got {args.sample}")
        config = TrainingConfig.from_settings(
            settings,
            data_path=_resolve_data_path(args.data),
            models=kinds,
            promote=args.promote,
            output_dir=args.output_dir,
            sample=args.sample,
            seed=args.seed,
            threads=args.threads,
            progress=not args.no_progress and not args.json,
        )
    except (SettingsError, ValueError) as exc:
        parser.error(str(exc))  # exits 2
    # MLflow's own INFO chatter (artifact uploads, "View run at") drowns the step lines.
    configure_logging(settings.log_level)
    logger.info("training %s on %s -> %s (experiment %s)", ",".join(config.models), config.data_path,
                config.tracking_uri, config.experiment)
    try:
        # MLflow prints "View run at" links on stdout; stdout is for the result (--json).
        with contextlib.redirect_stdout(sys.stderr):
            result = train_and_register(config)
    except (TrainingError, DataError) as exc:
        print(f"housing-train: {exc}", file=sys.stderr)
        return 1
    if args.announce if args.announce is not None else args.promote:
        announce_promotion(settings, result)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
