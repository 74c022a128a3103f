"""The paper's models (Section 6) in ``flax.nnx``.

Every classifier maps a batch of inputs to logits and takes ``rngs`` (an ``nnx.Rngs`` with a
``dropout`` stream) when training; ``rngs=None`` means evaluation (no dropout). The VAE's
``__call__`` returns the per-example negative ELBO. :func:`build_model` makes the model a config
names (``config.model.kind``, one of :data:`MODELS`) for a data set.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class LogisticRegression(nnx.Module):
    """Multiclass logistic regression (Figure 1), with optional dropout noise on the inputs.

    Example:
      >>> model = LogisticRegression(784, 10, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(
        self, in_features: int, num_classes: int, *, input_dropout: float = 0.0, rngs: nnx.Rngs
    ):
        self.linear = nnx.Linear(
            in_features, num_classes, kernel_init=nnx.initializers.zeros, rngs=rngs
        )
        self.input_dropout = nnx.Dropout(input_dropout)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        x = self.input_dropout(x, deterministic=rngs is None, rngs=rngs)
        return self.linear(x)


class MLP(nnx.Module):
    """Multilayer network of Figure 2: hidden ReLU layers (2 × 1000 in the paper) with dropout.

    Example:
      >>> model = MLP(784, (32, 32), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 784))).shape
      (2, 10)
    """

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        num_classes: int,
        *,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        sizes = (in_features, *hidden)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)
        self.input_dropout = nnx.Dropout(input_dropout)
        self.hidden_dropout = nnx.Dropout(hidden_dropout)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        deterministic = rngs is None
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        x = self.input_dropout(x, deterministic=deterministic, rngs=rngs)
        for layer in self.layers:
            x = self.hidden_dropout(jax.nn.relu(layer(x)), deterministic=deterministic, rngs=rngs)
        return self.head(x)


class CNN(nnx.Module):
    """Convolutional network of Figure 3: c64-c64-c128-1000 in the paper.

    Three stages of 5×5 convolution + ReLU + 3×3 max-pooling with stride 2, then a fully
    connected ReLU layer and the softmax layer. With dropout, inputs and the fully connected
    layer are dropped (the paper's "with dropout" runs).

    Example:
      >>> model = CNN(1, (8, 8, 16), 32, 10, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        hidden: int,
        num_classes: int,
        *,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        image_size: int = 28,
        rngs: nnx.Rngs,
    ):
        sizes = (in_channels, *channels)
        self.convs = nnx.List(
            [nnx.Conv(a, b, (5, 5), rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        side = image_size
        for _ in channels:
            side = (side - 3) // 2 + 1
        self.fc = nnx.Linear(side * side * channels[-1], hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
        self.input_dropout = nnx.Dropout(input_dropout)
        self.hidden_dropout = nnx.Dropout(hidden_dropout)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        deterministic = rngs is None
        x = self.input_dropout(x.astype(jnp.float32), deterministic=deterministic, rngs=rngs)
        for conv in self.convs:
            x = nnx.max_pool(jax.nn.relu(conv(x)), (3, 3), strides=(2, 2))
        x = jax.nn.relu(self.fc(x.reshape(x.shape[0], -1)))
        return self.head(self.hidden_dropout(x, deterministic=deterministic, rngs=rngs))


class VAE(nnx.Module):
    """Variational auto-encoder of Figure 4 (Kingma & Welling, 2013).

    One softplus hidden layer in the encoder and the decoder (500 units in the paper), a
    spherical Gaussian latent (50 dimensions in the paper), Bernoulli pixels. ``__call__``
    returns the negative ELBO of each example in nats; ``rngs`` supplies the ``noise`` stream
    for the reparameterised sample (``None``: use the posterior mean, for evaluation).

    Example:
      >>> model = VAE(784, 16, 4, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((3, 784)), nnx.Rngs(noise=1)).shape
      (3,)
    """

    def __init__(self, in_features: int, hidden: int, latent: int, *, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(in_features, hidden, rngs=rngs)
        self.mean = nnx.Linear(hidden, latent, rngs=rngs)
        self.log_var = nnx.Linear(hidden, latent, rngs=rngs)
        self.decoder = nnx.Linear(latent, hidden, rngs=rngs)
        self.logits = nnx.Linear(hidden, in_features, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = x.reshape(x.shape[0], -1).astype(jnp.float32)
        h = jax.nn.softplus(self.encoder(x))
        mean, log_var = self.mean(h), self.log_var(h)
        z = mean
        if rngs is not None:
            z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(rngs.noise(), mean.shape)
        logits = self.logits(jax.nn.softplus(self.decoder(z)))
        reconstruction = jnp.sum(
            jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits))), axis=-1
        )
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
        return reconstruction + kl


# ----------------------------------------------------------------------------- registry
def _logistic_regression(config: Mapping[str, Any], dataset: Any, rngs: nnx.Rngs) -> nnx.Module:
    return LogisticRegression(
        _in_features(dataset), dataset.num_classes, input_dropout=config["input_dropout"], rngs=rngs
    )


def _mlp(config: Mapping[str, Any], dataset: Any, rngs: nnx.Rngs) -> nnx.Module:
    return MLP(
        _in_features(dataset),
        tuple(config["hidden"]),
        dataset.num_classes,
        input_dropout=config["input_dropout"],
        hidden_dropout=config["hidden_dropout"],
        rngs=rngs,
    )


def _cnn(config: Mapping[str, Any], dataset: Any, rngs: nnx.Rngs) -> nnx.Module:
    return CNN(
        dataset.train_x.shape[-1],
        tuple(config["channels"]),
        config["hidden"],
        dataset.num_classes,
        input_dropout=config["input_dropout"],
        hidden_dropout=config["hidden_dropout"],
        image_size=dataset.train_x.shape[1],
        rngs=rngs,
    )


def _vae(config: Mapping[str, Any], dataset: Any, rngs: nnx.Rngs) -> nnx.Module:
    return VAE(_in_features(dataset), config["hidden"], config["latent"], rngs=rngs)


def _in_features(dataset: Any) -> int:
    return int(np.prod(dataset.train_x.shape[1:]))


# Model kind → builder(model config, data set, rngs); ``config.model.kind`` names one of them.
MODELS: dict[str, Callable[[Mapping[str, Any], Any, nnx.Rngs], nnx.Module]] = {
    "logreg": _logistic_regression,
    "mlp": _mlp,
    "cnn": _cnn,
    "vae": _vae,
}


def build_model(model_config: Mapping[str, Any], dataset: Any, seed: int) -> nnx.Module:
    """The model named by ``model_config["kind"]``, sized for ``dataset``, initialised by ``seed``.

    ``dataset`` is a :class:`jadam.experiments.data.Dataset` (its input shape and class count).

    Raises:
      ValueError: the kind is not one of :data:`MODELS`.

    Example:
      >>> build_model({"kind": "rnn"}, None, 0)
      Traceback (most recent call last):
      ...
      ValueError: model.kind: expected one of ['cnn', 'logreg', 'mlp', 'vae'], found 'rnn'
    """
    kind = model_config["kind"]
    if kind not in MODELS:
        raise ValueError(f"model.kind: expected one of {sorted(MODELS)}, found {kind!r}")
    return MODELS[kind](model_config, dataset, nnx.Rngs(params=seed))
