"""Command line: ``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper``.

Flags only; the work is done by :func:`jadam.experiments.train.train_and_evaluate`. Override
config fields with ``--config.num_epochs=3``; pick a config's tiny variant with
``--config=configs/fig2_mlp.py:smoke``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jadam.experiments import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics, checkpoints and figures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint at INFO level.
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
