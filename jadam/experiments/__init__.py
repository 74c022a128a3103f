"""Reproduction of the Adam paper's experiments (Kingma & Ba, 2015, Section 6, Figures 1–4).

Run ``python -m jadam.experiments --config=configs/paper.py --workdir=runs/paper``. The library
lives in ``train`` (``train_and_evaluate``), ``models``, ``data``, ``optimizers`` and ``plots``.
"""
