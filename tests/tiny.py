"""Tiny models and data for training tests (seconds, not minutes)."""

import keras

from advtf.data import load_dataset


def digits(train_subset=600, test_subset=200, validation=0.0, seed=0):
    return load_dataset("digits", train_subset=train_subset, test_subset=test_subset, validation=validation, seed=seed)


def tiny_cnn(input_shape=(16, 16, 1), classes=10, seed=0):
    """A BN-free CNN: mirrored and single-device training must then agree exactly."""
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", kernel_initializer=init)(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, kernel_initializer=keras.initializers.GlorotUniform(seed + 2))(x)
    return keras.Model(inputs, outputs)


def fitted_test_cnn(test_subset=64, epochs=3, seed=0):
    """advtf's ``test_cnn`` (with endpoints) fitted on 600 digits; returns it and the test arrays."""
    from advtf.data import split_arrays
    from advtf.models import create_model

    splits = digits(train_subset=600, test_subset=test_subset, seed=seed)
    x, y = split_arrays(splits.train)
    model = create_model("test_cnn", input_shape=splits.info.image_shape, num_classes=10, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=50, epochs=epochs, verbose=0)
    return model, split_arrays(splits.test)
