"""The Trainer's Keras callbacks: the learning rate in each epoch's logs, a progress line per
epoch, a training curve finer than epochs, and best-epoch selection that survives a fit split
over several calls (a resumed run)."""
import math
import time
from typing import Dict, List, Optional

from absl import logging
import tf_keras as keras

from common import progress
from models import schedules


class LearningRateLogger(keras.callbacks.Callback):
  """Adds the rate at each epoch's end to its logs, so history.json, the checkpoint's epoch
  rows and TensorBoard carry it. Goes before the callbacks that read the logs."""

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs['learning_rate'] = schedules.current_rate(self.model.optimizer)


class ThroughputLogger(keras.callbacks.Callback):
  """One line per epoch: loss, accuracy (and validation's) and images per second."""

  def __init__(self, model_name: str, epochs: int, batch_size: int):
    super().__init__()
    self._model_name, self._epochs, self._batch_size = model_name, epochs, batch_size
    self.images_per_second: List[float] = []

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._images = time.time(), 0
    steps = (self.params or {}).get('steps')  # None while tf.data's length is unknown.
    self._progress = progress.Progress(
        steps * self._batch_size if steps else None,
        f'{self._model_name} epoch {epoch + 1}/{self._epochs}', 'images')

  def on_train_batch_end(self, batch, logs=None):
    self._images += self._batch_size  # The last, partial batch is counted whole.
    self._progress.update(self._batch_size, postfix=f'loss {(logs or {}).get("loss", 0):.4f}')

  def on_epoch_end(self, epoch, logs=None):
    self._progress.close()
    rate = self._images / max(time.time() - self._start, 1e-9)
    self.images_per_second.append(rate)
    validation = (f', validation loss {logs["val_loss"]:.4f} accuracy {logs["val_accuracy"]:.4f}'
                  if 'val_loss' in logs else '')
    learning_rate = (f', learning rate {logs["learning_rate"]:.3g}'
                     if 'learning_rate' in logs else '')
    logging.info('%s epoch %d/%d: loss %.4f, accuracy %.4f%s, %.1f images/s%s',
                 self._model_name, epoch + 1, self._epochs, logs['loss'], logs['accuracy'],
                 validation, rate, learning_rate)


class TrainingCurve(keras.callbacks.Callback):
  """A point every `every_steps` training steps: the mean loss and accuracy over the steps since
  the previous point, the learning rate and the images trained on. A run shorter than an epoch
  (a time or image budget) still gets a curve where its epoch rows would give one point.

  `start_step` and `points` continue a resumed run (the list is the checkpoint's, so it is
  saved with the weights); a window cut by a kill restarts at the resumed step.
  """

  def __init__(self, model_name: str, every_steps: int, batch_size: int, start_step: int = 0,
               points: Optional[List[Dict[str, float]]] = None):
    super().__init__()
    self._model_name, self.every_steps, self._batch_size = model_name, every_steps, batch_size
    self.step = start_step
    self.points: List[Dict[str, float]] = [] if points is None else points
    self._sums: Dict[str, float] = {}
    self._steps = 0
    self._epoch_totals: Dict[str, float] = {}

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_totals = {}  # Keras' batch logs are means since the epoch (fit call) began.

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    self._steps += 1
    for key in ('loss', 'accuracy'):
      if key in (logs or {}):
        total = (batch + 1) * float(logs[key])
        self._sums[key] = self._sums.get(key, 0.0) + total - self._epoch_totals.get(key, 0.0)
        self._epoch_totals[key] = total
    if self.step % self.every_steps == 0:
      point = {'step': self.step, 'images': self.step * self._batch_size,
               **{key: value / self._steps for key, value in self._sums.items()},
               'learning_rate': schedules.current_rate(self.model.optimizer)}
      self.points.append(point)
      self._sums, self._steps = {}, 0
      logging.info('%s: %d images, loss %.4f, accuracy %.4f, learning rate %.3g',
                   self._model_name, point['images'], point.get('loss', math.nan),
                   point.get('accuracy', math.nan), point['learning_rate'])


class BestEpoch(keras.callbacks.Callback):
  """Keeps the weights of the epoch with the lowest validation loss and restores them at the
  end; stops after `patience` epochs without improvement (0 = never stops early)."""

  def __init__(self, patience: int = 0, monitor: str = 'val_loss'):
    super().__init__()
    self.patience, self.monitor = patience, monitor
    self.best_epoch, self.best_value, self._best_weights = -1, math.inf, None
    self.stopped_epoch = None

  def on_epoch_end(self, epoch, logs=None):
    value = logs[self.monitor]
    if value < self.best_value:
      self.best_epoch, self.best_value = epoch, value
      self._best_weights = self.model.get_weights()
    elif self.patience and epoch - self.best_epoch >= self.patience:
      self.stopped_epoch = epoch
      self.model.stop_training = True

  def restore_best(self) -> None:
    """Called once after the last fit() (a resumed run fits in several calls)."""
    if self._best_weights is not None:
      self.model.set_weights(self._best_weights)
