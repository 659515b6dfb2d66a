"""Retrain job: runs once per restart of the retrain Space. See DESIGN.md (the seven steps)."""
from __future__ import annotations

import argparse
import sys

from configs import ConfigError, add_setting_flags, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Retrain the complaint classifier for one LABEL, compare it with the deployed "
        "model on the same stratified samples, promote it only if macro-F1 improves, then pause "
        "this Space. Every setting is read from its environment variable; a flag overrides it.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved settings (secrets masked) and the dataset version, then exit")
    add_setting_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "dry_run"}
    try:
        cfg = load_config(overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    print(cfg.dump())
    return 0


if __name__ == "__main__":
    sys.exit(main())
