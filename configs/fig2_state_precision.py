"""Optimizer-state precision: Adam with float32, bfloat16 and 8-bit moments (issue 7).

Trains Figure 2's MLP (configs/fig2_mlp.py: same network, dropout, data, epochs and Adam's
searched α, β = (0.9, 0.999), ε = 1e-8) three times, changing only ``state_precision`` of the runs:
"float32" (8 bytes of state per parameter), "bfloat16" (stochastic rounding, 4) and "8bit"
(block-wise quantized, about 2). The legend gives each run's state bytes per parameter; the loss
on the whole training set (evaluation mode, no dropout) is logged as ``train_set_loss``.

``:vae`` does the same for Figure 4's VAE (configs/fig4_vae_bias_correction.py at its default
size, Adam with bias correction, α = 1e-2, β1 = 0.9, β2 = 0.999: the grid's best for those β).
``:smoke`` and ``:vae_smoke`` are the tiny variants. Other seeds: ``--config.seed=1``.
"""

from pathlib import Path

import ml_collections

from jadam.experiments.config_lib import check_arg, load_config_module, run, sibling_config

PRECISIONS = ("float32", "bfloat16", "8bit")
ARGS = ("", "smoke", "vae", "vae_smoke")


def get_config(arg: str = ""):
    check_arg("fig2_state_precision", arg, ARGS)
    size = "smoke" if arg.endswith("smoke") else ""
    if arg.startswith("vae"):
        module = load_config_module(Path(__file__).with_name("fig4_vae_bias_correction.py"))
        config = module.get_config(size)
        adam = config.runs[module.run_id(True, 0.9, 0.999, -2)].optimizer
        config.figure = "fig4_state_precision"
        config.plot.kind = "curves"
        config.plot.title = "Figure 4's VAE: Adam (α=1e-2, β1=0.9, β2=0.999) by state precision"
    else:
        config = sibling_config(__file__, "fig2_mlp", size)
        adam = config.runs.adam.optimizer
        config.figure = "fig2_state_precision"
        config.plot.title = f"Figure 2's MLP: Adam (α={adam.learning_rate:g}) by state precision"
    config.eval_train_set = True
    config.plot.legend_state_bytes = True
    config.runs = ml_collections.ConfigDict()
    for precision in PRECISIONS:  # Run ids are identifiers, so --config.runs.<id>... parses.
        config.runs[f"adam_{precision}"] = run(
            "adam", adam.learning_rate, state_precision=precision, **adam.hparams.to_dict()
        )
    return config
