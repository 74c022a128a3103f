"""Figure 2(b): the 2 × 1000 ReLU MLP on MNIST without dropout (deterministic cost), with SFO.

Paper: the same network as Figure 2(a) without dropout, so the cost is deterministic; Adam vs
the sum-of-functions optimizer SFO (Sohl-Dickstein et al., 2014; a quasi-Newton method over
mini-batches) and the first-order methods, plotted per iteration over the training set; the
text reports Adam faster than SFO per iteration and in wall-clock time, SFO being 5–10× slower
per iteration. Plotted here: the cost on the whole training set (evaluation after every epoch)
against epochs and against training wall-clock time in units of one Adam epoch
(jadam.experiments.sfo; compilation and evaluation excluded). Default: the embedded
4,000-image subset (31 mini-batches of 128, so SFO has 31 subfunctions), 4 epochs.

Learning rates: NOT searched at this budget yet (time ran out): Adam 1e-3 (the paper's
default), RMSProp 1e-3, AdaGrad 1e-2, SGDNesterov 0.1 (Figure 2(a)'s), AdaDelta 1; SFO has no α
(learning_rate = 1 is the paper's method; hessian_init = 1e3). 8 epochs, seed 0, whole-set cost:
Adam 0.0033, SGDNesterov 0.0043, RMSProp 0.0073, AdaDelta 0.0176, SFO 0.0332, AdaGrad 0.392.
"""

from jadam.experiments.config_lib import base_config, check_arg, make_smoke, run

EPOCHS = 4  # SFO's steps are ~15× Adam's on this machine; 4 epochs keep the main command short.


def get_config(arg: str = ""):
    check_arg("fig2b_mlp_sfo", arg)
    config = base_config(
        "fig2b_mlp_sfo",
        "mnist",
        {"kind": "mlp", "hidden": (1000, 1000), "input_dropout": 0.0, "hidden_dropout": 0.0},
        "Figure 2(b): MLP 2×1000 ReLU, deterministic cost (no dropout), with SFO",
    )
    config.num_epochs = EPOCHS
    config.log_every = 31
    config.eval_every = 31
    config.checkpoint_every = 31 * 4
    config.eval_train_set = True
    config.plot.kind = "curves_time"
    config.plot.metric = "train_set_loss"
    config.plot.time_unit_run = "adam"
    config.plot.yscale = "log"
    config.plot.ylabel = "training cost (whole training set)"
    config.runs.adam = run("adam", 1e-3)
    config.runs.adagrad = run("adagrad", 1e-2)
    config.runs.rmsprop = run("rmsprop", 1e-3)
    config.runs.sgd_nesterov = run("sgd_nesterov", 0.1)
    config.runs.adadelta = run("adadelta", 1.0)
    config.runs.sfo = run("sfo", 1.0, hessian_init=1e3)
    if arg == "smoke":
        config.model.hidden = (64, 64)
        make_smoke(config, steps=(3, 8, 8, 8))
    return config
