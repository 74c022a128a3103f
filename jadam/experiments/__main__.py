"""Command line: ``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper``.

Flags only; the work is done by :func:`jadam.experiments.train.train_and_evaluate`. Override
config fields with ``--config.num_epochs=3``; pick a config's tiny variant with
``--config=configs/fig2_mlp.py:smoke``. A bad config or override ends the program with a
one-line ``error: ...`` naming the key and what is allowed, and exit status 1.
"""

import re
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


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl's flag parsing, with a one-line error for a bad ``--config`` or override."""
    try:
        return flag_values(argv)
    except flags.Error as error:  # e.g. --config.batch_size=abc: says what the config holds.
        message = str(error)
        if "Traceback (most recent call last)" in message:  # get_config raised: its last line.
            message = message.split(": Error whilst", 1)[0] + ": " + message.splitlines()[-1]
        match = re.match(r"flag --config\.([\w.]+)=", message)
        config = flag_values["config"].value if match else None
        if config is not None:
            current = config
            for key in match.group(1).split("."):
                current = current[key]
            message += f"; config.{match.group(1)} is {type(current).__name__} {current!r}"
        _exit(message)
    except (AttributeError, KeyError) as error:  # An override of a key the config lacks.
        spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        explained = None
        if spec is not None:
            try:
                explained = config_check.unknown_override(config_check.load_config_file(spec), argv)
            except Exception:
                explained = None
        _exit(explained or f"--config override: {error}")


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
    app.run(main, flags_parser=parse_flags)
