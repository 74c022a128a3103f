"""Every figure of the paper (Kingma & Ba 2015, Figures 1–4 and 2(b)) at the default size.

Plus fig2_state_precision (jadam's optimizer-state precision on Figure 2's MLP, about 1 minute).

``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper`` writes
``runs/paper/<figure>/`` per figure (metrics.jsonl, summary.json, PNG, checkpoints) and the
combined ``runs/paper/metrics.jsonl``, ``summary.json`` and PNGs. ``configs/paper.py:smoke``
runs every figure's smoke variant; ``--config.only=fig2_mlp,fig3_cnn`` runs a subset.
Override a figure's field with e.g. ``--config.figures.fig2_mlp.num_epochs=50``.
"""

import importlib.util
from pathlib import Path

import ml_collections

FIGURES = (
    "fig1_logreg_mnist",
    "fig1_logreg_imdb",
    "fig2_mlp",
    "fig2b_mlp_sfo",
    "fig3_cnn",
    "fig4_vae_bias_correction",
    "fig2_state_precision",  # Not in the paper: Adam's state in float32, bfloat16 and 8 bits.
)


def _figure_config(name: str, arg: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        f"jadam_config_{name}", Path(__file__).with_name(f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg: str = ""):
    if arg not in ("", "smoke"):
        raise ValueError(f"paper: unknown config argument {arg!r}; expected '' or 'smoke'")
    config = ml_collections.ConfigDict()
    config.only = ",".join(FIGURES)  # Comma-separated figure names to run, in this order.
    config.figures = ml_collections.ConfigDict(
        {name: _figure_config(name, arg) for name in FIGURES}
    )
    return config
