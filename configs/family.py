"""The Adam family side by side: Figure 2's MLP and Figure 4's VAE (benchmarks/family.py).

Every member of jadam's Adam family trains the same network on the same data for the same
budget, at three learning rates around its usual one (α0/3, α0, 3·α0: ``GRID``); the benchmark
keeps each member's best. ``""``: Figure 2's MLP (2×1000 ReLU, dropout) on the embedded MNIST
subset, 5 epochs (155 steps); ``"vae"``: Figure 4's VAE at its default size, 5 epochs;
``"smoke"`` and ``"vae_smoke"``: tiny variants for the tests (α0 only). Other hyperparameters
are each optimizer's defaults (AdEMAMix: β3 = 0.999 and α = 2, since the paper's β3 = 0.9999 needs
~10⁴ steps to fill the slow EMA; Adafactor: the relative step with parameter scaling).
"""

import ml_collections

from jadam.experiments.config_lib import check_arg, run, sibling_config

# Member → (α0, hyperparameters). Run ids: f"{member}_{k}" for α = α0·GRID[k].
MEMBERS = {
    "adam": (3e-3, {}),
    "adamax": (3e-3, {}),
    "amsgrad": (3e-3, {}),
    "nadam": (3e-3, {}),
    "adopt": (3e-3, {}),
    "ademamix": (1e-3, {"b3": 0.999, "alpha": 2.0}),
    "schedule_free_adamw": (3e-3, {}),
    "adafactor": (1e-2, {}),
    "radam": (3e-3, {}),
    "adabelief": (3e-3, {}),
    "yogi": (1e-2, {}),
    "lamb": (3e-3, {}),
    "nadamw": (3e-3, {}),
    "adamaxw": (3e-3, {}),
}
GRID = (1 / 3, 1.0, 3.0)
ARGS = ("", "smoke", "vae", "vae_smoke")


def get_config(arg: str = ""):
    check_arg("family", arg, ARGS)
    smoke = arg.endswith("smoke")
    if arg.startswith("vae"):
        config = sibling_config(__file__, "fig4_vae_bias_correction", "smoke" if smoke else "")
        config.figure = "family_vae"
        config.plot.kind = "curves"
        config.plot.title = "Figure 4's VAE: the Adam family (each at its best α of three)"
    else:
        config = sibling_config(__file__, "fig2_mlp", "smoke" if smoke else "")
        config.figure = "family"
        config.plot.title = "Figure 2's MLP: the Adam family (each at its best α of three)"
    if not smoke:
        config.num_epochs = 5
        config.eval_every = config.checkpoint_every = 31 * 5
    config.runs = ml_collections.ConfigDict()
    for member, (alpha, hparams) in MEMBERS.items():
        for index, factor in enumerate((1.0,) if smoke else GRID):
            config.runs[f"{member}_{index}"] = run(member, alpha * factor, **hparams)
    return config
