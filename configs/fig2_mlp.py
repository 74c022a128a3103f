"""Figure 2 (left): multilayer network, 2 × 1000 ReLU hidden units with dropout, on MNIST.

Paper: mini-batch 128, dropout regularisation; Adam vs AdaGrad vs RMSProp vs SGD with Nesterov
momentum vs AdaDelta (+ AdaMax, §7.1), training cost over 200 epochs of the full training set.
Default here: the paper's network on the embedded 4,000-image MNIST subset for 15 epochs.
Dropout: 20% on the inputs, 50% on the hidden units (Hinton et al., 2012). Real MNIST:
--config.data_dir=DIR; longer: --config.num_epochs=200.

Learning rates: α with the best final training loss on the grid {1e-4, 3e-4, …, 3e-2, 1e-1} per
optimizer (3 epochs of the default setting, seed 0; ``python -m jadam.experiments.lr_search``):
Adam 0.256 at 3e-3, AdaMax 0.304 at 3e-3, RMSProp 0.353 at 3e-3, AdaGrad 0.509 at 0.1 and
SGDNesterov 0.366 at 0.1 (both at the grid's edge). AdaDelta keeps its usual α = 1.
"""

from jadam.experiments.config_lib import base_config, ladder, run, search


def get_config(arg: str = ""):
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
    config.runs.adam = run("adam", 3e-3)
    config.runs.adamax = run("adamax", 3e-3)
    config.runs.adagrad = run("adagrad", 0.1)
    config.runs.rmsprop = run("rmsprop", 3e-3)
    config.runs.sgd_nesterov = run("sgd_nesterov", 0.1)
    config.runs.adadelta = run("adadelta", 1.0)
    config.search = search(ladder(1e-4, 1.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        config.search = search((0.01, 0.1), max_extensions=1)
        config.model.hidden = (64, 64)
        config.num_train, config.num_test, config.batch_size = 512, 200, 64
        config.num_epochs, config.log_every, config.eval_every, config.checkpoint_every = 3, 4, 8, 8
    elif arg:
        raise ValueError(f"fig2_mlp: unknown config argument {arg!r}; expected '' or 'smoke'")
    return config
