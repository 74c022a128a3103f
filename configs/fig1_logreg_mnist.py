"""Figure 1 (left): multiclass logistic regression on MNIST, α_t = α/√t, mini-batch 128.

Paper: Adam vs SGD with Nesterov momentum vs AdaGrad (+ AdaMax, §7.1), training negative
log-likelihood over 45 epochs of the full 60,000-image training set. Default here: the embedded
4,000-image MNIST subset, 45 epochs. Real MNIST: --config.data_dir=DIR with the IDX files.

Learning rates: α with the best final training loss on the grid {1e-3, 3e-3, …, 1, 3, 10} per
optimizer (9 epochs of the default setting, seed 0; ``python -m jadam.experiments.lr_search
configs/fig1_logreg_mnist.py 9 1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1,3,10 DIR``), as the paper took
the best setting of a grid. Losses: Adam 0.149 at 0.3, AdaMax 0.275 at 0.1, AdaGrad 0.274 at 3,
SGDNesterov 0.214 at 1.
"""

from jadam.experiments.config_lib import base_config, ladder, run, search


def get_config(arg: str = ""):
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
    config.runs.adam = run("adam", 0.3, "inverse_sqrt")
    config.runs.adamax = run("adamax", 0.1, "inverse_sqrt")
    config.runs.adagrad = run("adagrad", 3.0, "inverse_sqrt")
    config.runs.sgd_nesterov = run("sgd_nesterov", 1.0, "inverse_sqrt")
    config.search = search(ladder(1e-3, 10.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        config.search = search((0.01, 0.1), max_extensions=1)
        config.num_train, config.num_test, config.batch_size = 512, 200, 64
        config.num_epochs, config.log_every, config.eval_every, config.checkpoint_every = 3, 4, 8, 8
    elif arg:
        raise ValueError(
            f"fig1_logreg_mnist: unknown config argument {arg!r}; expected '' or 'smoke'"
        )
    return config
