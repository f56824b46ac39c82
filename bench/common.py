"""What the three trainings of the benchmark share: MNIST's split and the Keras model.

The split is labkit's (``labkit.data``): 10 % of the training images held out for
validation, stratified by class, seed 0, then an optional stratified subset of the rest
(``train_size``, for smoke tests only).  Imports are inside the functions, so that each
script pays only for what it uses (the JAX loop imports no Keras, labkit's driver no
scikit-learn).
"""


def load_mnist(path: str, train_size: int | None = None, validation: float = 0.1):
    """``x_train, x_val, y_train, y_val``: 784 float32 pixels in [0, 1], int64 labels."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    with np.load(path) as f:
        x, y = f["x_train"], f["y_train"]
    x = x.reshape(len(x), -1).astype("float32") / 255.0
    x_train, x_val, y_train, y_val = train_test_split(
        x, y.astype("int64"), test_size=int(round(validation * len(y))), stratify=y, random_state=0)
    if train_size is not None and train_size < len(y_train):
        x_train, _, y_train, _ = train_test_split(x_train, y_train, train_size=train_size,
                                                  stratify=y_train, random_state=0)
    return x_train, x_val, y_train, y_val


def compiled_mlp(lr: float):
    """The MLP 784-256-128-10 a student writes, compiled with SGD at ``lr``."""
    import keras

    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
