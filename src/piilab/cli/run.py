"""`piilab run EXPERIMENT.yaml` and `piilab demo [--out DIR]`."""

from __future__ import annotations

from piilab.cli._args import add_threads_arg
from piilab.experiment import Experiment, demo_config_path, run_experiment


def register(subparsers) -> None:
    run = subparsers.add_parser("run", help="data → train → eval → report from one experiment file")
    run.add_argument("experiment", help="experiment YAML (see src/piilab/configs/demo.yaml)")
    run.add_argument("--out", help="override the file's output folder")
    add_threads_arg(run)
    run.set_defaults(func=run_file)

    demo = subparsers.add_parser(
        "demo", help="the whole flow on embedded defaults (synthetic data, SmolLM2-135M) on a CPU"
    )
    demo.add_argument("--out", default="piilab-demo", help="output folder (default ./piilab-demo)")
    add_threads_arg(demo)
    demo.set_defaults(func=run_file, experiment=None)


def run_file(args) -> int:
    experiment = Experiment.from_yaml(args.experiment or demo_config_path(), out=args.out)
    print(f"report: {run_experiment(experiment)}")
    return 0
