"""Figure 2 (left): multilayer network, 2 × 1000 ReLU hidden units with dropout, on MNIST.

Paper: mini-batch 128, dropout regularisation; Adam vs AdaGrad vs RMSProp vs SGD with Nesterov
momentum vs AdaDelta (+ AdaMax, §7.1), training cost over 200 epochs of the full training set.
Default here: the paper's network on the embedded 4,000-image MNIST subset for 15 epochs.
Dropout: 20% on the inputs, 50% on the hidden units (Hinton et al., 2012). Real MNIST:
--config.data_dir=DIR; longer: --config.num_epochs=200.

Learning rates, by the paper's tuning protocol (docs/tuning.md): α per run on a
half-decade grid starting around the previous value and grown past an edge holding the
best, at this figure's budget (15 epochs, default data, seed 0); score:
mean training loss over the final epoch. 26 min on 2 shared CPU cores:
``python -m jadam.experiments.lr_search --config=configs/fig2_mlp.py``
``--workdir=runs/lr/fig2_mlp``. AdaDelta keeps its usual α = 1 (not searched).

| run | chosen α | momentum | loss |
|---|---|---|---|
| adagrad | 0.3 | — | 0.1367 |
| adam | 0.001 | — | 0.06898 |
| adamax | 0.003 | — | 0.08193 |
| rmsprop | 0.001 | — | 0.08006 |
| sgd_nesterov | 0.1 | 0.9 | 0.1293 |

| run / α | 3e-4 | 1e-3 | 3e-3 | 1e-2 | 3e-2 | 1e-1 | 3e-1 | 1e0 |
|---|---|---|---|---|---|---|---|---|
| adagrad | — | — | — | — | 0.313 | 0.148 | **0.137** | 2.31 |
| adam | 0.169 | **0.069** | 0.145 | 0.522 | — | — | — | — |
| adamax | — | 0.182 | **0.0819** | 0.113 | — | — | — | — |
| rmsprop | 0.175 | **0.0801** | 0.109 | 0.429 | — | — | — | — |
| sgd_nesterov m=0.9 | — | — | — | — | 0.143 | **0.129** | 0.807 | — |
| sgd_nesterov m=0.99 | — | — | 0.182 | **0.147** | 0.658 | 2.32 | div. | — |
"""

from jadam.experiments.config_lib import base_config, check_arg, ladder, make_smoke, run, search


def get_config(arg: str = ""):
    check_arg("fig2_mlp", arg)
    config = base_config(
        "fig2_mlp",
        "mnist",
        {"kind": "mlp", "hidden": (1000, 1000), "input_dropout": 0.2, "hidden_dropout": 0.5},
        "Figure 2: MLP 2×1000 ReLU with dropout, MNIST",
    )
    config.num_epochs = 15
    config.log_every = 31
    config.eval_every = 31 * 5
    config.checkpoint_every = 31 * 5
    config.runs.adam = run("adam", 1e-3)
    config.runs.adamax = run("adamax", 3e-3)
    config.runs.adagrad = run("adagrad", 0.3)
    config.runs.rmsprop = run("rmsprop", 1e-3)
    config.runs.sgd_nesterov = run("sgd_nesterov", 0.1, momentum=0.9)
    config.runs.adadelta = run("adadelta", 1.0)
    config.search = search(ladder(1e-4, 1.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        config.model.hidden = (64, 64)
        make_smoke(config)
    return config
