"""BatchNorm after a short fit and across replicas: moving statistics re-estimated from
training batches, and statistics computed over the global batch."""
import tensorflow as tf
import tf_keras as keras


def recalibrate_batchnorm(model: keras.Model, dataset: tf.data.Dataset, num_batches: int) -> int:
  """Replaces every BatchNorm's moving statistics by their average over training batches.

  After a short fit the exponential moving averages lag the weights (docs/architecture.md,
  "BatchNorm"); with momentum i/(i+1) on batch i the moving value becomes the plain mean of the
  per-batch statistics. The momentum is a variable read inside one compiled step (Keras'
  BatchNormalization accepts a tensor momentum), so the pass is traced once, not run eagerly.
  Returns the number of batches used.
  """
  layers = [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]
  momenta = [layer.momentum for layer in layers]
  momentum = tf.Variable(0.0, trainable=False, dtype=tf.float32)

  @tf.function
  def step(images):
    model(images, training=True)

  used = 0
  try:
    for layer in layers:
      layer.momentum = momentum
    for images, _ in dataset.take(num_batches):
      momentum.assign(used / (used + 1))
      step(images)
      used += 1
  finally:
    for layer, value in zip(layers, momenta):
      layer.momentum = value
  return used


def synchronize_batchnorm(model: keras.Model) -> keras.Model:
  """`model` (same weights) with every BatchNorm computing its training statistics over the
  global batch, all replicas together: each replica's share alone would make a run's result
  depend on the device count (and smaller batches deepen the BatchNorm trap)."""
  def clone(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
      config.update(synchronized=True, fused=None)  # Fused kernels cannot synchronize.
    return layer.__class__.from_config(config)
  synchronized = keras.models.clone_model(model, clone_function=clone)
  synchronized.set_weights(model.get_weights())
  return synchronized
