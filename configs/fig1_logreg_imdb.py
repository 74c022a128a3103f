"""Figure 1 (right): logistic regression on IMDB bag-of-words with 50% input dropout, α_t = α/√t.

Paper: 10,000 most frequent words as sparse binary features, 50% dropout noise on the inputs;
Adam vs AdaGrad vs RMSProp vs SGD with Nesterov momentum (+ AdaMax, §7.1), training negative
log-likelihood. Default here: a STAND-IN (5,000 training documents of Zipf-distributed words,
see ``jadam.experiments.data.zipf_bag_of_words``), because the IMDB data cannot be embedded.
Real data: --config.data_dir=DIR containing aclImdb/{train,test}/labeledBow.feat.

Learning rates: docs/tuning.md's search at this budget (30 epochs, default data, seed 0),
5.6 min on 2 shared CPU cores:
``python -m jadam.experiments.lr_search --config=configs/fig1_logreg_imdb.py``
``--workdir=runs/lr/fig1_logreg_imdb``.

| run | chosen α | momentum | loss |
|---|---|---|---|
| adagrad | 1 | — | 0.08165 |
| adam | 0.1 | — | 0.03397 |
| adamax | 0.1 | — | 0.06982 |
| rmsprop | 0.03 | — | 0.0397 |
| sgd_nesterov | 0.3 | 0.99 | 0.04341 |

| run / α | 1e-2 | 3e-2 | 1e-1 | 3e-1 | 1e0 | 3e0 |
|---|---|---|---|---|---|---|
| adagrad | — | — | — | 0.126 | **0.0816** | 0.083 |
| adam | 0.08 | 0.0437 | **0.034** | 0.0692 | — | — |
| adamax | — | 0.0937 | **0.0698** | 0.114 | — | — |
| rmsprop | 0.0681 | **0.0397** | 0.0422 | — | — | — |
| sgd_nesterov m=0.9 | — | — | 0.123 | 0.0837 | **0.0576** | 0.0933 |
| sgd_nesterov m=0.99 | — | — | 0.0559 | **0.0434** | 0.101 | — |
"""

from jadam.experiments.config_lib import base_config, check_arg, ladder, make_smoke, run, search


def get_config(arg: str = ""):
    check_arg("fig1_logreg_imdb", arg)
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
    config.runs.adam = run("adam", 0.1, "inverse_sqrt")
    config.runs.adamax = run("adamax", 0.1, "inverse_sqrt")
    config.runs.adagrad = run("adagrad", 1.0, "inverse_sqrt")
    config.runs.rmsprop = run("rmsprop", 0.03, "inverse_sqrt")
    config.runs.sgd_nesterov = run("sgd_nesterov", 0.3, "inverse_sqrt", momentum=0.99)
    config.search = search(ladder(1e-3, 3.0), momenta=(0.9, 0.99), span=1)
    if arg == "smoke":
        make_smoke(config)
    return config
