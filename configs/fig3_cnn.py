"""Figure 3: convolutional network c64-c64-c128-1000 on CIFAR-10, with and without dropout.

Paper: three stages of 5×5 convolutions and 3×3 max-pooling (stride 2), a 1000-unit ReLU layer,
mini-batch 128, inputs whitened; Adam vs AdaGrad vs SGD with Nesterov momentum, each with and
without dropout (inputs and the fully connected layer); the first 3 epochs (left) and 45 epochs
(right). Default here, so that it runs in about two minutes on 2 CPU cores: a quarter of the
width (c16-c16-c32-256) for 6 epochs on a STAND-IN, the embedded 28×28 MNIST digits. Paper size:
--config.model.channels='(64,64,128)' --config.model.hidden=1000 --config.num_epochs=45 with
--config.data_dir=DIR holding CIFAR-10's python batches (cifar-10-batches-py).

Learning rates: docs/tuning.md's search at this budget (6 epochs, default data, seed 0),
31 min on 2 shared CPU cores:
``python -m jadam.experiments.lr_search --config=configs/fig3_cnn.py``
``--workdir=runs/lr/fig3_cnn``.

| run | chosen α | momentum | loss |
|---|---|---|---|
| adagrad | 0.1 | — | 0.1115 |
| adagrad_dropout | 0.1 | — | 0.2491 |
| adam | 0.003 | — | 0.05314 |
| adam_dropout | 0.003 | — | 0.1339 |
| sgd_nesterov | 0.03 | 0.9 | 0.0347 |
| sgd_nesterov_dropout | 0.03 | 0.9 | 0.1556 |

| run / α | 3e-4 | 1e-3 | 3e-3 | 1e-2 | 3e-2 | 1e-1 | 3e-1 |
|---|---|---|---|---|---|---|---|
| adagrad | — | — | 1.29 | 0.32 | 0.134 | **0.112** | 1.29 |
| adagrad_dropout | — | — | 1.73 | 0.516 | 0.262 | **0.249** | 2.2 |
| adam | 0.269 | 0.13 | **0.0531** | 0.077 | — | — | — |
| adam_dropout | 0.461 | 0.205 | **0.134** | 0.19 | — | — | — |
| sgd_nesterov m=0.9 | — | — | 0.268 | 0.0881 | **0.0347** | 2.3 | — |
| sgd_nesterov_dropout m=0.9 | — | — | 0.494 | 0.203 | **0.156** | 0.241 | — |
"""

from jadam.experiments.config_lib import base_config, check_arg, ladder, make_smoke, run, search

DROPOUT = {"input_dropout": 0.2, "hidden_dropout": 0.5}


def get_config(arg: str = ""):
    check_arg("fig3_cnn", arg)
    config = base_config(
        "fig3_cnn",
        "cifar10",
        {
            "kind": "cnn",
            "channels": (16, 16, 32),
            "hidden": 256,
            "input_dropout": 0.0,
            "hidden_dropout": 0.0,
        },
        "Figure 3: CNN c16-c16-c32-256 (paper: c64-c64-c128-1000)",
    )
    config.num_epochs = 6
    config.log_every = 8
    config.steps_per_call = 1  # XLA's CPU convolutions are several times slower inside lax.scan.
    config.eval_every = 8 * 4
    config.checkpoint_every = 8 * 4
    config.plot.kind = "curves_zoom"
    config.plot.zoom_epochs = 3
    config.plot.yscale = "log"
    alphas = {"adam": 3e-3, "adagrad": 0.1, "sgd_nesterov": 3e-2}  # Searched (table above).
    if arg == "smoke":  # 16 steps of a 4-4-8 CNN: AdaGrad's α = 0.1 overshoots there.
        alphas = {"adam": 1e-3, "adagrad": 1e-2, "sgd_nesterov": 1e-2}
    for name, alpha in alphas.items():
        config.runs[name] = run(name, alpha)
        config.runs[name + "_dropout"] = run(name, alpha, setting="dropout", model=DROPOUT)
    config.search = search(ladder(1e-5, 1.0), momenta=(0.9,), span=1)
    if arg == "smoke":
        make_smoke(config, sizes=(256, 100, 32), steps=(2, 4, 8, 8))
        config.model.channels, config.model.hidden = (4, 4, 8), 16
        config.steps_per_call = 2
    return config
