"""Figure 4: bias-correction ablation on a variational auto-encoder (VAE) trained on MNIST.

Paper: VAE with a 500-unit softplus hidden layer and a 50-dimensional Gaussian latent; Adam with
β1 ∈ {0, 0.9}, β2 ∈ {0.99, 0.999, 0.9999} and log10(α) ∈ [−5, −1], with bias correction (red)
and without it (green, ``jadam.scale_by_adam(..., bias_correction=False)``, RMSProp with
momentum); loss after 10 and 100 epochs. Default here: a 200-unit hidden layer and a 20-dim
latent on the embedded 4,000-image MNIST subset, loss after 2 and 12 epochs (62 and 372 steps),
α ∈ {1e-5, …, 1e-1}. All 60 runs share two compiled train steps (the hyperparameters live in
the optimizer state via ``optax.inject_hyperparams``). Paper size: --config.model.hidden=500
--config.model.latent=50 --config.num_epochs=100 --config.plot.budgets_epochs='(10,100)'.

The figure is the paper's search: best α per (bias correction, β1, β2) after 12 epochs (the
mean training loss over the final epoch), none at an edge of the grid, so the grid was not
grown (6 min on 2 shared CPU cores): ``python -m jadam.experiments.lr_search``
``--config=configs/fig4_vae_bias_correction.py --workdir=runs/lr/fig4_vae_bias_correction``.

| run | chosen α | momentum | loss |
|---|---|---|---|
| bc_b1_00_b2_09999 | 0.001 | — | 145.5 |
| bc_b1_00_b2_0999 | 0.001 | — | 145.3 |
| bc_b1_00_b2_099 | 0.001 | — | 142.9 |
| bc_b1_09_b2_09999 | 0.01 | — | 124.3 |
| bc_b1_09_b2_0999 | 0.01 | — | 124.2 |
| bc_b1_09_b2_099 | 0.01 | — | 122.8 |
| nobc_b1_00_b2_09999 | 0.0001 | — | 143.7 |
| nobc_b1_00_b2_0999 | 0.001 | — | 143.6 |
| nobc_b1_00_b2_099 | 0.001 | — | 139.6 |
| nobc_b1_09_b2_09999 | 0.001 | — | 135 |
| nobc_b1_09_b2_0999 | 0.001 | — | 130.1 |
| nobc_b1_09_b2_099 | 0.01 | — | 128.3 |

| run / α | 1e-5 | 1e-4 | 1e-3 | 1e-2 | 1e-1 |
|---|---|---|---|---|---|
| bc_b1_00_b2_09999 | 479 | 220 | **145** | 149 | div. |
| bc_b1_00_b2_0999 | 479 | 219 | **145** | 146 | div. |
| bc_b1_00_b2_099 | 475 | 214 | **143** | 148 | div. |
| bc_b1_09_b2_09999 | 478 | 219 | 139 | **124** | 214 |
| bc_b1_09_b2_0999 | 478 | 218 | 139 | **124** | 214 |
| bc_b1_09_b2_099 | 474 | 213 | 136 | **123** | 216 |
| nobc_b1_00_b2_09999 | 213 | **144** | 195 | div. | div. |
| nobc_b1_00_b2_0999 | 285 | 161 | **144** | 225 | div. |
| nobc_b1_00_b2_099 | 433 | 194 | **140** | 177 | div. |
| nobc_b1_09_b2_09999 | 221 | 144 | **135** | 215 | 1.08e+03 |
| nobc_b1_09_b2_0999 | 304 | 170 | **130** | 196 | 285 |
| nobc_b1_09_b2_099 | 446 | 203 | 135 | **128** | 215 |
"""

from jadam.experiments.config_lib import base_config, check_arg, make_smoke, run, search

B1 = (0.0, 0.9)
B2 = (0.99, 0.999, 0.9999)
LOG10_ALPHA = (-5, -4, -3, -2, -1)


def run_id(corrected: bool, b1: float, b2: float, log10_alpha: int) -> str:
    """E.g. ``bc_b1_09_b2_0999_lr_m3`` (β1=0.9, β2=0.999, α=1e-3, with bias correction)."""
    digits = lambda v: str(v).replace(".", "")  # noqa: E731
    return f"{'bc' if corrected else 'nobc'}_b1_{digits(b1)}_b2_{digits(b2)}_lr_m{-log10_alpha}"


def get_config(arg: str = ""):
    check_arg("fig4_vae_bias_correction", arg)
    config = base_config(
        "fig4_vae_bias_correction",
        "mnist",
        {"kind": "vae", "hidden": 200, "latent": 20},
        "Figure 4: VAE, Adam with (red) and without (green) bias correction",
    )
    config.num_epochs = 12
    config.log_every = 31  # One point per epoch.
    config.eval_every = 31 * 12
    config.checkpoint_every = 31 * 6
    config.plot.kind = "vae_grid"
    config.plot.ylabel = "loss (negative ELBO, nats)"
    config.plot.budgets_epochs = (2, 12)
    config.plot.ymax = 300.0
    b2_values, alphas = B2, LOG10_ALPHA
    # The figure is itself the search: α per (bias correction, β1, β2) over its grid, extended
    # past an edge that holds the best α (runs that differ only in α form one family).
    config.search = search(tuple(10.0**e for e in LOG10_ALPHA), max_extensions=2)
    if arg == "smoke":
        config.model.hidden, config.model.latent = 32, 4
        make_smoke(config, steps=(3, 4, 24, 8))
        config.plot.budgets_epochs = (1, 3)
        b2_values, alphas = (0.999,), (-3, -2)
        config.search = search((1e-3, 1e-2), max_extensions=1)
    for corrected in (True, False):
        for b1 in B1:
            for b2 in b2_values:
                for log10_alpha in alphas:
                    config.runs[run_id(corrected, b1, b2, log10_alpha)] = run(
                        "adam",
                        10.0**log10_alpha,
                        setting=f"β1={b1}, β2={b2}",
                        b1=b1,
                        b2=b2,
                        bias_correction=corrected,
                    )
    return config
