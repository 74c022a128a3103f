"""Figure 1 (right): logistic regression on IMDB bag-of-words with 50% input dropout, α_t = α/√t.

Paper: 10,000 most frequent words as sparse binary features, 50% dropout noise on the inputs;
Adam vs AdaGrad vs RMSProp vs SGD with Nesterov momentum (+ AdaMax, §7.1), training negative
log-likelihood. Default here: a STAND-IN (5,000 training documents of Zipf-distributed words,
see ``jadam.experiments.data.zipf_bag_of_words``), because the IMDB data cannot be embedded.
Real data: --config.data_dir=DIR containing aclImdb/{train,test}/labeledBow.feat.

Learning rates: α with the best final training loss on the grid {1e-3, 3e-3, …, 1, 3} per
optimizer (5 epochs of the default setting, seed 0; ``python -m jadam.experiments.lr_search``).
Losses: Adam 0.092 at 0.03, AdaMax 0.144 at 0.1, AdaGrad 0.133 at 1, RMSProp 0.091 at 0.03,
SGDNesterov 0.128 at 0.3.
"""

from jadam.experiments.config_lib import base_config, ladder, run, search


def get_config(arg: str = ""):
    config = base_config(
        "fig1_logreg_imdb",
        "imdb",
        {"kind": "logreg", "input_dropout": 0.5},
        "Figure 1 (right): logistic regression, IMDB BoW, 50% input dropout, α/√t",
    )
    config.num_epochs = 30
    config.log_every = 39  # One point per epoch (39 steps of 128 make an epoch of 5,000).
    config.eval_every = 39 * 5
    config.checkpoint_every = 39 * 10
    config.plot.ylabel = "training negative log likelihood"
    config.runs.adam = run("adam", 0.03, "inverse_sqrt")
    config.runs.adamax = run("adamax", 0.1, "inverse_sqrt")
    config.runs.adagrad = run("adagrad", 1.0, "inverse_sqrt")
    config.runs.rmsprop = run("rmsprop", 0.03, "inverse_sqrt")
    config.runs.sgd_nesterov = run("sgd_nesterov", 0.3, "inverse_sqrt")
    config.search = search(ladder(1e-3, 3.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        config.search = search((0.01, 0.1), max_extensions=1)
        config.num_train, config.num_test, config.batch_size = 512, 200, 64
        config.num_epochs, config.log_every, config.eval_every, config.checkpoint_every = 3, 4, 8, 8
    elif arg:
        raise ValueError(
            f"fig1_logreg_imdb: unknown config argument {arg!r}; expected '' or 'smoke'"
        )
    return config
