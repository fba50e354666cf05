"""``facemark selftrain CONFIG [section.key=value ...]``: training with unlabelled data.

``self_training.method`` picks the trainer: ``stc`` (self-training with curriculum, the
default; ``facemark.training.self_training.self_train``) or ``dann`` (domain-adversarial
training; ``facemark.training.dann.train_dann``). ``--method`` sets it from the command line.
"""
from __future__ import annotations

import argparse

from facemark.configs import bundled_config_names, resolve_config
from facemark.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "selftrain", help="self-training with curriculum (or DANN) on labelled + unlabelled "
                          "data",
        description="PIPNet's self-training with curriculum (STC): train on data.train, "
                    "pseudo-label data.unlabelled with the model, retrain on both, one round "
                    "per entry of self_training.curriculum (task levels; the paper: 2 1 0 0 0). "
                    "With self_training.method=dann (or --method dann): domain-adversarial "
                    "training instead (DANN, the paper's Table 7 baseline), one run on labelled "
                    "+ unlabelled batches. "
                    "CONFIG is a YAML file or a bundled config name (see --list-configs). "
                    "Running the same command again skips complete rounds and resumes a killed "
                    "one from its last complete epoch.")
    p.add_argument("config", nargs="?", help="YAML config file or bundled config name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. self_training.curriculum=[0,0,0] optim.epochs=10")
    p.add_argument("--list-configs", action="store_true",
                   help="list the bundled self-training configs and exit")
    p.add_argument("--method", choices=("stc", "dann"),
                   help="self_training.method: stc (pseudo-label rounds) or dann "
                        "(domain-adversarial)")
    p.add_argument("--restart", action="store_true",
                   help="delete this experiment's rounds (or checkpoints) and start again")
    p.add_argument("--init", metavar="MODEL",
                   help="use this trained model (.ckpt or .pt) as round 0 instead of training it "
                        "(self_training.init_checkpoint)")
    p.add_argument("--precision", help="32-true, 16-mixed or bf16-mixed")
    p.add_argument("--out", help="output folder (trainer.out_dir)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facemark.training.config import load_config

    if args.list_configs:
        for name in bundled_config_names():
            if "/selftrain/" in name:
                print(name)
        return 0
    if not args.config:
        raise ConfigError("name a config file (or see facemark selftrain --list-configs)")
    overrides = list(args.overrides)
    if args.precision is not None:
        overrides.append(f"trainer.precision={args.precision}")
    if args.out is not None:  # paths in overrides are the current directory's
        overrides.append(f"trainer.out_dir={args.out}")
    if args.init is not None:
        overrides.append(f"self_training.init_checkpoint={args.init}")
    if args.method is not None:
        overrides.append(f"self_training.method={args.method}")
    cfg = load_config(resolve_config(args.config), overrides)

    # registers the face detectors for self_training.boxes=detector[:NAME] (the trainers sit
    # a layer below them and find them through facemark.data.face_finders)
    import facemark.inference.detectors  # noqa: F401

    if cfg.self_training.method == "dann":
        from facemark.training.dann import train_dann

        result = train_dann(cfg, restart=args.restart)
    else:
        from facemark.training.self_training import self_train

        result = self_train(cfg, restart=args.restart)
    print()
    print(result.table())
    return 0
