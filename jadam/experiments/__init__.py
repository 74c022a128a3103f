"""Reproduction of the Adam paper's experiments (Kingma & Ba, 2015, Section 6, Figures 1–4).

Run ``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper``. Modules:
``train`` (the jitted steps and ``train_and_evaluate``), ``runner`` (a figure and its runs made
ready to train), ``checkpoints`` (saving, resuming, the workdir's fingerprint), ``report``
(metrics file, summary rows and table), ``models`` (the networks and their registry), ``data``,
``optimizers`` (config → optax transformation), ``sfo``, ``plots``, ``config_lib`` (building
and loading configs) and ``config_check`` (every config check).
"""
