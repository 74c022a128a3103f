"""Figure 1 (left): multiclass logistic regression on MNIST, α_t = α/√t, mini-batch 128.

Paper: Adam vs SGD with Nesterov momentum vs AdaGrad (+ AdaMax, §7.1), training negative
log-likelihood over 45 epochs of the full 60,000-image training set. Default here: the embedded
4,000-image MNIST subset, 45 epochs. Real MNIST: --config.data_dir=DIR with the IDX files.

Learning rates: docs/tuning.md's search at this budget (45 epochs, default data, seed 0),
2.4 min on 2 shared CPU cores:
``python -m jadam.experiments.lr_search --config=configs/fig1_logreg_mnist.py``
``--workdir=runs/lr/fig1_logreg_mnist``.

| run | chosen α | momentum | loss |
|---|---|---|---|
| adagrad | 3 | — | 0.1603 |
| adam | 3 | — | 0.0002024 |
| adamax | 0.3 | — | 0.1199 |
| sgd_nesterov | 3 | 0.99 | 0.006686 |

| run / α | 3e-2 | 1e-1 | 3e-1 | 1e0 | 3e0 | 1e1 |
|---|---|---|---|---|---|---|
| adagrad | — | — | — | 0.231 | **0.16** | 0.172 |
| adam | — | 0.0836 | 0.031 | 0.00452 | **0.000202** | 0.00678 |
| adamax | 0.267 | 0.183 | **0.12** | 0.146 | — | — |
| sgd_nesterov m=0.9 | — | — | 0.232 | 0.152 | **0.0909** | 0.0955 |
| sgd_nesterov m=0.99 | — | — | 0.0909 | 0.028 | **0.00669** | 0.00707 |
"""

from jadam.experiments.config_lib import base_config, check_arg, ladder, make_smoke, run, search


def get_config(arg: str = ""):
    check_arg("fig1_logreg_mnist", arg)
    config = base_config(
        "fig1_logreg_mnist",
        "mnist",
        {"kind": "logreg", "input_dropout": 0.0},
        "Figure 1 (left): logistic regression, MNIST, α/√t",
    )
    config.num_epochs = 45
    config.log_every = 31  # About one point per epoch (31 steps of 128 make an epoch of 4,000).
    config.eval_every = 31 * 5
    config.checkpoint_every = 31 * 15
    config.plot.ylabel = "training negative log likelihood"
    config.runs.adam = run("adam", 3.0, "inverse_sqrt")
    config.runs.adamax = run("adamax", 0.3, "inverse_sqrt")
    config.runs.adagrad = run("adagrad", 3.0, "inverse_sqrt")
    config.runs.sgd_nesterov = run("sgd_nesterov", 3.0, "inverse_sqrt", momentum=0.99)
    config.search = search(ladder(1e-3, 10.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        make_smoke(config)
    return config
