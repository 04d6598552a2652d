"""The Trainer's training curve: points finer than epochs, averaged over their own steps, kept
in the resume checkpoint."""
import numpy as np
import pytest


def _model_and_batches():
  import tensorflow as tf
  import tf_keras as keras

  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)])
  # A rate of zero: every batch's loss is what evaluating the fixed weights on it gives.
  model.compile(optimizer=keras.optimizers.SGD(0.0),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
  rng = np.random.default_rng(0)
  features = rng.normal(size=(6, 8, 4)).astype(np.float32) * np.arange(1, 7)[:, None, None]
  labels = rng.integers(0, 3, size=(6, 8))
  batches = tf.data.Dataset.from_tensor_slices((features, labels))
  return model, batches, features, labels


def test_points_average_the_steps_since_the_previous_point_across_epochs():
  from models import resume
  from models import training_callbacks

  model, batches, features, labels = _model_and_batches()
  per_batch = [model.evaluate(x, y, verbose=0, batch_size=8) for x, y in zip(features, labels)]
  curve = training_callbacks.TrainingCurve('m', every_steps=3, batch_size=8)
  # Four epochs of two batches over the six repeated batches: the points at steps 3 and 6
  # each span an epoch boundary, where Keras' running means start again.
  model.fit(batches.repeat(), epochs=4, steps_per_epoch=2, verbose=0, callbacks=[curve])
  assert [p['step'] for p in curve.points] == [3, 6]
  assert [p['images'] for p in curve.points] == [24, 48]
  for point, window in zip(curve.points, ([0, 1, 2], [3, 4, 5])):
    assert point['loss'] == pytest.approx(np.mean([per_batch[i][0] for i in window]), rel=1e-5)
    assert point['accuracy'] == pytest.approx(np.mean([per_batch[i][1] for i in window]),
                                              rel=1e-5)
    assert point['learning_rate'] == 0.0
  columns = resume.as_columns(curve.points)
  assert columns['step'] == [3, 6]
  assert columns['loss'] == [p['loss'] for p in curve.points]


def test_a_resumed_curve_continues_from_the_checkpoint_step_and_its_points(tmp_path):
  from models import resume
  from models import training_callbacks

  model, batches, _, _ = _model_and_batches()
  state = resume.TrainingState(str(tmp_path / 'checkpoint'), model)
  state.curve.append({'step': 2, 'images': 16, 'loss': 1.0})
  state.global_step.assign(3)
  state.save()

  model, batches, _, _ = _model_and_batches()
  restored = resume.TrainingState(str(tmp_path / 'checkpoint'), model)
  start = restored.restore()
  curve = training_callbacks.TrainingCurve('m', 2, 8, start, restored.curve)
  model.fit(batches.repeat(), epochs=1, steps_per_epoch=3, verbose=0, callbacks=[curve])
  assert start == 3
  # The restored point, then every second step from the resumed step 3 on.
  assert [p['step'] for p in restored.curve] == [2, 4, 6]
  assert restored.curve is curve.points
