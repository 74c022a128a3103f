"""The small learning-rate search behind the α values in configs/ (the paper: best of a grid).

``python -m jadam.experiments.lr_search configs/fig2_mlp.py 3 1e-4,1e-3,1e-2 runs/lr_fig2``
trains every optimizer of the figure config for the given number of epochs (no dropout changes,
same seed) at each α of the grid and prints the final training loss per (optimizer, α), marking
the best α per optimizer. AdaDelta and the Figure 4 grid are not searched.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

from jadam.experiments import train


def search(
    config_path: str, epochs: int, grid: list[float], workdir: str
) -> dict[str, tuple[float, float]]:
    """Returns {run id: (best α, its final training loss)} and prints the whole table."""
    spec = importlib.util.spec_from_file_location("searched_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = module.get_config("")
    best: dict[str, tuple[float, float]] = {}
    for alpha in grid:
        config = module.get_config("")
        config.num_epochs, config.progress = epochs, False
        config.checkpoint_every = config.eval_every = config.log_every * 10**6
        for run_id in list(config.runs):
            if config.runs[run_id].optimizer.name == "adadelta" or "dropout" in run_id:
                del config.runs[run_id]
            else:
                config.runs[run_id].optimizer.learning_rate = alpha
        rows = train.run_figure(config, Path(workdir) / f"{base.figure}_alpha_{alpha:g}")
        for row in rows:
            loss = row["final_train_loss"]
            loss = math.inf if loss is None else loss
            print(f"{row['run']:<16} α={alpha:<8g} final train loss {loss:.4f}", flush=True)
            if row["run"] not in best or loss < best[row["run"]][1]:
                best[row["run"]] = (alpha, loss)
    for run_id, (alpha, loss) in sorted(best.items()):
        print(f"BEST {run_id:<16} α={alpha:g} (loss {loss:.4f})")
    return best


if __name__ == "__main__":
    path, epochs, grid, workdir = sys.argv[1:5]
    search(path, int(epochs), [float(a) for a in grid.split(",")], workdir)
