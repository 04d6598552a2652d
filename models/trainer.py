"""The Trainers' shared run_fn: the model is chosen by custom_config['model_name'].

Examples arrive raw (PNG bytes); the transform graph decodes and resizes them on the fly
in tf.data, and the exported SavedModel applies the same graph to what clients send.
"""
import json
import os
import time
from typing import Any, Dict, List, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features
from models import architectures

_SHUFFLE_BUFFER = 10_000
HISTORY_FILE = 'history.json'
# Training batches on which the Trainer compares inference-mode with training accuracy.
_CHECK_BATCHES = 10


def _dataset(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, shuffle: bool,
             seed: int) -> tf.data.Dataset:
  """(image, label) batches, one pass over the files; the transform graph runs in tf.data."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle,
                                     shuffle_seed=seed, shuffle_buffer_size=_SHUFFLE_BUFFER,
                                     num_epochs=1),
      tf_transform_output.raw_metadata.schema)
  transform_layer = tf_transform_output.transform_features_layer()

  def transform(raw):
    transformed = transform_layer({key: raw[key] for key in
                                   (features.IMAGE_KEY, features.CATEGORY_KEY)})
    return transformed[features.IMAGE], transformed[features.LABEL]

  return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def recalibrate_batchnorm(model: keras.Model, dataset: tf.data.Dataset, num_batches: int) -> int:
  """Replaces every BatchNorm's moving statistics by their average over training batches.

  After a short fit the exponential moving averages lag the weights (DESIGN.md, "BatchNorm
  trap"); with momentum i/(i+1) on batch i the moving value becomes the plain mean of the
  per-batch statistics. Runs eagerly so the changed momentum is read on every call.
  Returns the number of batches used.
  """
  layers = [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]
  momenta = [layer.momentum for layer in layers]
  used = 0
  try:
    for images, _ in dataset.take(num_batches):
      for layer in layers:
        layer.momentum = used / (used + 1)
      model(images, training=True)
      used += 1
  finally:
    for layer, momentum in zip(layers, momenta):
      layer.momentum = momentum
  return used


def _inference_accuracy(model: keras.Model, dataset: tf.data.Dataset,
                        num_batches: int) -> Tuple[float, int]:
  """Top-1 accuracy in inference mode over the first `num_batches`, and the images counted."""
  correct = total = 0
  for images, labels in dataset.take(num_batches):
    predicted = tf.argmax(model(images, training=False), axis=-1)
    correct += int(tf.reduce_sum(tf.cast(predicted == labels, tf.int32)))
    total += int(labels.shape[0])
  return correct / max(total, 1), total


class _ThroughputLogger(keras.callbacks.Callback):
  """One line per epoch: loss, accuracy and images per second."""

  def __init__(self, model_name: str, epochs: int, batch_size: int):
    super().__init__()
    self._model_name, self._epochs, self._batch_size = model_name, epochs, batch_size
    self.images_per_second: List[float] = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._images = time.time(), 0

  def on_train_batch_end(self, batch, logs=None):
    self._images += self._batch_size  # The last, partial batch is counted whole.

  def on_epoch_end(self, epoch, logs=None):
    rate = self._images / max(time.time() - self._start, 1e-9)
    self.images_per_second.append(rate)
    logging.info('%s epoch %d/%d: loss %.4f, accuracy %.4f, %.1f images/s', self._model_name,
                 epoch + 1, self._epochs, logs['loss'], logs['accuracy'], rate)


def _export_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput):
  """serving_default (tf.Example -> class), embed (tf.Example -> fc_1 + class), serving_png."""
  # Attached to the model so the transform graph's assets are tracked and saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()
  embedder = keras.Model(model.input, [model.get_layer('fc_1').output, model.output])
  categories = tf.constant(
      tf_transform_output.vocabulary_by_name(features.CATEGORY_VOCABULARY), tf.string)
  image_spec = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

  def predict(raw_images):
    image = model.tft_layer({features.IMAGE_KEY: raw_images})[features.IMAGE]
    embedding, logits = embedder(image, training=False)
    probabilities = tf.nn.softmax(logits)
    class_id = tf.argmax(probabilities, axis=-1)
    return {'probabilities': probabilities, 'class_id': class_id,
            'category': tf.gather(categories, class_id), 'embedding': embedding}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(examples):
    outputs = predict(tf.io.parse_example(examples, image_spec)[features.IMAGE_KEY])
    return {key: outputs[key] for key in ('probabilities', 'class_id', 'category')}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def embed(examples):
    return predict(tf.io.parse_example(examples, image_spec)[features.IMAGE_KEY])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_png')])
  def serve_png(image_png):
    return predict(image_png)

  return {'serving_default': serve_examples, 'embed': embed, 'serving_png': serve_png}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  config: Dict[str, Any] = fn_args.custom_config
  name = config['model_name']
  seed = int(config.get('seed', 0))
  keras.utils.set_random_seed(seed)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  num_classes = tf_transform_output.vocabulary_size_by_name(features.CATEGORY_VOCABULARY)
  batch_size = int(config['batch_size'])
  epochs = int(config['epochs'])

  train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                   batch_size, shuffle=True, seed=seed)
  model = architectures.build(name, num_classes, image_size=int(config['image_size']),
                              batchnorm_momentum=float(config['batchnorm_momentum']))
  model.compile(
      optimizer=keras.optimizers.Adam(float(config['learning_rate'])),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=['accuracy'])
  logging.info('Training %s: %d classes, %d epochs, batch %d', name, num_classes, epochs,
               batch_size)
  throughput = _ThroughputLogger(name, epochs, batch_size)
  history = model.fit(train, epochs=epochs, verbose=0, callbacks=[
      throughput,
      keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch',
                                  profile_batch=0)])

  recalibration = int(config['batchnorm_recalibration_batches'])
  # Its own shuffle (seed + 1): batches for re-estimating BatchNorm and for the check below.
  recalibration_data = _dataset(fn_args.train_files, fn_args.data_accessor,
                                tf_transform_output, batch_size, shuffle=True, seed=seed + 1)
  used = recalibrate_batchnorm(model, recalibration_data, recalibration) if recalibration else 0
  # The BatchNorm trap shows as a gap between these two numbers (training vs. inference mode).
  inference_accuracy, checked = _inference_accuracy(model, recalibration_data, _CHECK_BATCHES)
  logging.info('%s: last-epoch training accuracy %.4f; after re-estimating BatchNorm statistics '
               'on %d batches, inference-mode accuracy on %d training images %.4f', name,
               history.history['accuracy'][-1], used, checked, inference_accuracy)

  summary = {
      'model_name': name, 'num_classes': num_classes, 'epochs': epochs,
      'batch_size': batch_size, 'history': history.history,
      'images_per_second': throughput.images_per_second,
      'batchnorm_recalibration_batches': used,
      'inference_mode_train_accuracy': inference_accuracy,
      'inference_mode_checked_images': checked,
  }
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), 'w') as f:
    json.dump(summary, f, indent=2)

  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures=_export_signatures(model, tf_transform_output))
  # TF Serving's place for extra files: the class names in label-id order, for consumers.
  extra = os.path.join(fn_args.serving_model_dir, 'assets.extra')
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, 'categories.txt'), 'w') as f:
    for category in tf_transform_output.vocabulary_by_name(features.CATEGORY_VOCABULARY):
      f.write(category.decode('utf-8') + '\n')
