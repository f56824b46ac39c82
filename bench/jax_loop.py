"""The near-limit reference: the same MLP trained by a hand-written JAX loop.

784-256-128-10 ReLU, softmax cross-entropy, plain SGD, batch 128, the same MNIST
split as labkit's; one jitted epoch = a shuffle plus ``jax.lax.scan`` over the
minibatches (the last partial batch is dropped), then the validation accuracy.  XLA's
default multi-threading.  The first epoch includes compilation; the median of the
others is the steady epoch ``bench/run.py`` compares labkit with.  Prints one JSON line.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from common import load_mnist  # noqa: E402  (bench/common.py: the split labkit uses)

SIZES = (784, 256, 128, 10)


def init_params(key):
    """Glorot-uniform kernels and zero biases, as Keras' Dense."""
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        key, sub = jax.random.split(key)
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        params.append((jax.random.uniform(sub, (fan_in, fan_out), minval=-limit, maxval=limit),
                       jnp.zeros(fan_out)))
    return params


def logits(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss(params, x, y):
    log_probs = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))


def make_epoch(n: int, batch_size: int, lr: float):
    steps = n // batch_size

    def step(params, batch):
        grads = jax.grad(loss)(params, *batch)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), None

    @jax.jit
    def epoch(params, x, y, key):
        order = jax.random.permutation(key, n)[: steps * batch_size]
        batches = (x[order].reshape(steps, batch_size, -1), y[order].reshape(steps, batch_size))
        return jax.lax.scan(step, params, batches)[0]

    return epoch


@jax.jit
def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(logits(params, x), axis=1) == y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="path of mnist.npz")
    parser.add_argument("--epochs", type=int, default=6, help="epochs, the first one compiles")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--train-size", type=int, default=None)
    args = parser.parse_args()
    x_train, x_val, y_train, y_val = map(jnp.asarray, load_mnist(args.data, args.train_size))
    epoch = make_epoch(len(y_train), args.batch_size, args.lr)
    params, key = init_params(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
    seconds, acc = [], None
    for _ in range(args.epochs):
        key, sub = jax.random.split(key)
        start = time.perf_counter()
        params = epoch(params, x_train, y_train, sub)
        acc = accuracy(params, x_val, y_val).block_until_ready()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"epoch_seconds": seconds, "val_accuracy": float(acc),
                      "total_seconds": time.perf_counter() - START}))


if __name__ == "__main__":
    main()
