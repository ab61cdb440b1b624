"""micro: the one command line.

  micro run | up | down            the three services as local processes (as `make run`)
  micro data COMMAND               bars and features: import, download, synth, demo, features, gaps, info, prepare
  micro train | validate | live    one service in the foreground (as its container runs it)
  micro validate CHECKPOINT        one validation report for one file, without the service
  micro status | promote | rollback   the promoted model, by hand (a hand promotion bypasses only the gate)
  micro export coreml|onnx ...     the networks as Core ML packages, a challenger as ONNX
  micro explain DECISION_ID        replay one live decision bit for bit (same action, same visit counts?)
  micro bench NAME | all           a benchmark under bench/ (each prints a final JSON line)
  micro config show [SERVICE]      the settings in effect and where each came from
  micro config schema              the JSON schema of the TOML file (MICRO_CONFIG)

Settings come from defaults < the TOML file MICRO_CONFIG names < .env < the environment
< `--set name=value` (README, Configuration). Each verb's --help says more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from shared.core.settings import ConfigError, Settings, leaf_schema, load_settings

BENCHMARKS = ("features", "mcts", "selfplay", "scale", "live", "validation", "learning", "arena", "chaos", "parity")
SERVICES = ("training", "validation", "live", "data")


def settings_classes() -> dict[str, type[Settings]]:
    from services.live.config import LiveSettings
    from services.training.config import TrainingSettings
    from services.validation.config import ValidationSettings
    from shared.cli.data import DataSettings

    return {"training": TrainingSettings, "validation": ValidationSettings, "live": LiveSettings, "data": DataSettings}


def parse_sets(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set learner.learning_rate=0.001")
        values[name.strip()] = value
    return values


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for this run, above every other source (repeatable)")


def cmd_service(args: argparse.Namespace) -> int:
    from shared.service.main import run_service

    name = {"train": "training", "validate": "validation", "live": "live"}[args.verb]
    module = __import__(f"services.{name}.__main__", fromlist=["build"])
    return run_service(name, settings_classes()[name], module.build, cli=parse_sets(args.sets))


def cmd_validate_one(args: argparse.Namespace) -> int:
    """One report for one checkpoint: validation's replay, statistics and gate, nothing promoted."""
    from shared.features.store import load_feature_set
    from shared.validation.gate import gate
    from shared.validation.validator import validate
    from shared.volume.candidates import check_market, load_candidate
    from shared.volume.promotion import champion_metrics

    settings = load_settings(settings_classes()["validation"], cli=parse_sets(args.sets))
    candidate = load_candidate(args.checkpoint)
    check_market(candidate, settings.instrument, settings.granularity)
    features = load_feature_set(settings.db_path, settings.instrument, settings.granularity)
    features.require_sessions("validation")
    print(f"validating {args.checkpoint.name} on {len(features.sessions['validation'])} validation sessions ...",
          file=sys.stderr, flush=True)
    report = validate(candidate, features, settings.run,
                      progress=lambda share: print(f"\r{share:5.0%}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    champion = champion_metrics(settings.checkpoint_dir)
    reasons = gate(report, champion, settings.run.gate)
    result = {"checkpoint": str(args.checkpoint), "passes_gate": not reasons, "reasons": reasons,
              "versus": "the promoted champion" if champion else "no champion yet", **report.to_dict()}
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    names = [args.service] if args.service else list(SERVICES)
    shown = {}
    for name in names:
        cls = settings_classes()[name]
        settings = load_settings(cls, cli=parse_sets(args.sets))
        shown[name] = settings.effective()
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    for name, values in shown.items():
        cls = settings_classes()[name]
        variables = {k.name: k.variables[0] for k in cls.knobs()}
        print(f"[{name}]")
        for key, item in values.items():
            print(f"  {key} = {json.dumps(item['value'])}    # {item['source']}"
                  f"{', ' + variables[key] if key in variables else ''}")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    classes = settings_classes()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "micro-muzero configuration (MICRO_CONFIG)",
              "type": "object", "additionalProperties": False,
              "properties": {**{name: leaf_schema(cls) for name, cls in classes.items()},
                             "instrument": {"type": "string"}, "granularity": {"type": "string"},
                             "data_dir": {"type": "string"}, "checkpoint_dir": {"type": "string"}}}
    print(json.dumps(schema, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    names = BENCHMARKS if args.name == "all" else (args.name,)
    failed = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}", *args.rest]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="micro", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, target in (("run", "the services in the foreground; Ctrl-C stops them"),
                         ("up", "the services in the background (logs in runtime/logs)"), ("down", "stop them")):
        verbs.add_parser(verb, help=target, add_help=False)
    verbs.add_parser("data", help="bars and features (micro data --help)", add_help=False)
    for verb, text in (("train", "the training service"), ("live", "the live service")):
        _add_set(verbs.add_parser(verb, help=text))
    validate = verbs.add_parser("validate", help="the validation service, or one report for CHECKPOINT")
    validate.add_argument("checkpoint", type=Path, nargs="?", help="a candidate file: one report, nothing promoted")
    _add_set(validate)
    for verb, text in (("status", "what CURRENT points to"), ("promote", "promote a checkpoint by hand"),
                       ("rollback", "point CURRENT at a model in promoted/")):
        verbs.add_parser(verb, help=text, add_help=False)
    verbs.add_parser("export", help="the networks as Core ML packages, a challenger as ONNX (micro export --help)",
                     add_help=False)
    verbs.add_parser("explain", help="replay one live decision bit for bit (micro explain --help)", add_help=False)
    bench = verbs.add_parser("bench", help="run a benchmark, or all of them")
    bench.add_argument("name", choices=(*BENCHMARKS, "all"))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="passed to the benchmark")
    config = verbs.add_parser("config", help="the configuration: show, schema")
    what = config.add_subparsers(dest="what", required=True)
    show = what.add_parser("show", help="the settings in effect, with where each came from")
    show.add_argument("service", nargs="?", choices=SERVICES)
    show.add_argument("--json", action="store_true")
    _add_set(show)
    what.add_parser("schema", help="the JSON schema of the TOML file")
    return parser


# verbs whose own command line takes the rest of the arguments as it is
DELEGATED = {"run": "deploy.local", "up": "deploy.local", "down": "deploy.local", "data": "shared.cli.data",
             "status": "shared.volume.promotion", "promote": "shared.volume.promotion", "rollback": "shared.volume.promotion",
             "export": "shared.export", "explain": "shared.live.explain"}


def _delegate(verb: str, rest: list[str]) -> int:
    module = __import__(DELEGATED[verb], fromlist=["main"])
    if verb in ("run", "up", "down"):
        return module.main([verb, *rest])
    if verb in ("status", "promote", "rollback"):
        # shared.volume.promotion takes --root before its command
        options = [a for i, a in enumerate(rest) if a == "--root" or (i and rest[i - 1] == "--root")]
        positional = [a for a in rest if a not in options]
        return module.main([*options, verb, *positional])
    return module.main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.verb in ("train", "live") or (args.verb == "validate" and args.checkpoint is None):
            return cmd_service(args)
        if args.verb == "validate":
            return cmd_validate_one(args)
        if args.verb == "bench":
            return cmd_bench(args)
        return cmd_config_show(args) if args.what == "show" else cmd_config_schema(args)
    # CandidateError is a ValueError, FeatureStoreError a RuntimeError
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"micro {args.verb}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
