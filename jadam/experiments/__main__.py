"""Command line: ``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper``.

Flags only; the work is done by :func:`jadam.experiments.train.train_and_evaluate`. Override
config fields with ``--config.num_epochs=3``; pick a config's tiny variant with
``--config=configs/fig2_mlp.py:smoke``. A bad config or override ends the program with a
one-line ``error: ...`` naming the key and what is allowed, and exit status 1.
"""

import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jadam.experiments import config_check, data, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and figures.")
flags.mark_flags_as_required(["config", "workdir"])


def _exit(message: str) -> None:
    sys.exit("error: " + " ".join(str(message).split()))  # One line on stderr, exit status 1.


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return config_check.parse_flags(argv, flags.FLAGS)
    except config_check.ConfigError as error:
        _exit(error)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO level.
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):  # The file did not load.
        try:
            _CONFIG.value.keys()
        except OSError as error:
            _exit(f"--config: {error}")
    try:
        config_check.check_config(_CONFIG.value)  # Before loading data or training anything.
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (config_check.ConfigError, FileNotFoundError, data.DataFormatError) as error:
        _exit(error)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
