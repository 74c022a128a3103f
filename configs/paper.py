"""Every figure of the paper (Kingma & Ba 2015, Figures 1–4 and 2(b)) at the default size.

Plus fig2_state_precision (jadam's optimizer-state precision on Figure 2's MLP, about 1 minute).

``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper`` writes
``runs/paper/<figure>/`` per figure (metrics.jsonl, summary.json, PNG, checkpoints) and the
combined ``runs/paper/metrics.jsonl``, ``summary.json`` and PNGs. ``configs/paper.py:smoke``
runs every figure's smoke variant; ``--config.only=fig2_mlp,fig3_cnn`` runs a subset.
Override a figure's field with e.g. ``--config.figures.fig2_mlp.num_epochs=50``.
"""

import ml_collections

from jadam.experiments.config_lib import check_arg, sibling_config

FIGURES = (
    "fig1_logreg_mnist",
    "fig1_logreg_imdb",
    "fig2_mlp",
    "fig2b_mlp_sfo",
    "fig3_cnn",
    "fig4_vae_bias_correction",
    "fig2_state_precision",  # Not in the paper: Adam's state in float32, bfloat16 and 8 bits.
)


def get_config(arg: str = ""):
    check_arg("paper", arg)
    config = ml_collections.ConfigDict()
    config.only = ",".join(FIGURES)  # Comma-separated figure names to run, in this order.
    config.figures = ml_collections.ConfigDict(
        {name: sibling_config(__file__, name, arg) for name in FIGURES}
    )
    return config
