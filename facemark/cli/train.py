"""``facemark train CONFIG [section.key=value ...]``: supervised training with Lightning."""
from __future__ import annotations

import argparse

from facemark.configs import bundled_config_names, resolve_config
from facemark.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a landmark model from a YAML config",
        description="Train a landmark model. CONFIG is a YAML file or the name of a bundled "
                    "config (see --list-configs). Any key can be overridden as section.key=value. "
                    "Running the same command again resumes from the last complete epoch.")
    p.add_argument("config", nargs="?", help="YAML config file or bundled config name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. optim.lr=1e-3 data.input_size=128")
    p.add_argument("--list-configs", action="store_true", help="list the bundled configs and exit")
    p.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint instead of the "
                   "run's own last.ckpt")
    p.add_argument("--restart", action="store_true",
                   help="start from scratch even if the run folder has checkpoints")
    p.add_argument("--devices", help="devices per node (e.g. 1, 4, auto); DDP when more than one")
    p.add_argument("--num-nodes", type=int, help="number of machines (DDP over nodes)")
    p.add_argument("--precision", help="32-true, 16-mixed or bf16-mixed")
    p.add_argument("--out", help="output folder (trainer.out_dir)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facemark.training.config import load_config

    if args.list_configs:
        for name in bundled_config_names():
            print(name)
        return 0
    if not args.config:
        raise ConfigError("name a config file (or see facemark train --list-configs)")
    overrides = list(args.overrides)
    for flag, key in (("devices", "trainer.devices"), ("num_nodes", "trainer.num_nodes"),
                      ("precision", "trainer.precision"), ("out", "trainer.out_dir")):
        value = getattr(args, flag)
        if value is not None:  # paths in overrides are the current directory's
            overrides.append(f"{key}={value}")
    cfg = load_config(resolve_config(args.config), overrides)

    from facemark.training.run import train

    resume = args.resume or (None if args.restart else "auto")
    result = train(cfg, resume=resume, overwrite=args.restart)
    if result.is_global_zero:
        print()
        print(result.table())
    return 0
