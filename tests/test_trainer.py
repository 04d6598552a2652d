"""BatchNorm recalibration (docs/architecture.md, "BatchNorm") on a small, learnable problem."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import architectures
from models import batchnorm


SIZE, CLASSES, PER_CLASS, BATCH = 32, 3, 32, 16


def _bars(seed=0):
  """Horizontal, vertical and diagonal bars at random places: easy to learn in a few steps."""
  rng = np.random.default_rng(seed)
  images = np.zeros((CLASSES * PER_CLASS, SIZE, SIZE, 1), np.float32)
  labels = np.repeat(np.arange(CLASSES), PER_CLASS)
  for i, label in enumerate(labels):
    at = rng.integers(4, SIZE - 4)
    if label == 0:
      images[i, at - 1:at + 2, 2:-2] = 1
    elif label == 1:
      images[i, 2:-2, at - 1:at + 2] = 1
    else:
      for d in range(-2, 3):
        images[i, np.arange(SIZE), np.clip(np.arange(SIZE) + d, 0, SIZE - 1)] = 1
  order = rng.permutation(len(labels))
  return images[order], labels[order]


@pytest.fixture(scope='module')
def fitted():
  keras.utils.set_random_seed(0)
  images, labels = _bars()
  # Keras' default momentum (0.99) with a few dozen steps: the moving statistics lag.
  model = architectures.build('sknet', CLASSES, image_size=SIZE, batchnorm_momentum=0.99)
  model.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), ['accuracy'])
  history = model.fit(images, labels, batch_size=BATCH, epochs=4, verbose=0, shuffle=True)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(BATCH)
  return model, dataset, history.history['accuracy'][-1], images


def test_recalibrated_statistics_are_the_mean_of_batch_statistics(fitted):
  model, dataset, _, images = fitted
  used = batchnorm.recalibrate_batchnorm(model, dataset, num_batches=4)
  assert used == 4
  conv = keras.Model(model.input, model.get_layer('conv1_1').output)
  batch_means = [conv(images[i * BATCH:(i + 1) * BATCH]).numpy().mean(axis=(0, 1, 2))
                 for i in range(4)]
  np.testing.assert_allclose(model.get_layer('conv1_1_bn').moving_mean.numpy(),
                             np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-5)
  # Momentum is restored for any further training.
  assert model.get_layer('conv1_1_bn').momentum == 0.99


def test_inference_accuracy_matches_training_accuracy_after_recalibration(fitted):
  model, dataset, training_accuracy, images = fitted
  assert training_accuracy > 0.8  # The problem was learned (in training mode).
  batchnorm.recalibrate_batchnorm(model, dataset, num_batches=6)
  predicted = np.argmax(model.predict(images, batch_size=BATCH, verbose=0), axis=-1)
  inference_accuracy = float(np.mean(predicted == np.concatenate([y for _, y in dataset])))
  assert inference_accuracy >= training_accuracy - 0.1
