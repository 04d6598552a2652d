"""Resumable training: a Trainer killed mid-fit continues from its last checkpoint.

The model, the optimizer (its slots and step count, so a learning-rate schedule continues),
the global step and the training seconds spent are checkpointed at every epoch end and at
least every `save_seconds`. The data are a seeded, repeated stream of batches, so skipping the
batches already trained on reproduces what the interrupted run would have seen next. A time
budget counts the seconds of every attempt, so a resumed run stops where an uninterrupted one
would, and the schedule's clock (models/schedules.py) continues the same curve.
"""
import json
import math
import time
from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_keras as keras


class TrainingState:
  """The checkpoint of one training run in `directory` (one per set of inputs and settings)."""

  def __init__(self, directory: str, model: keras.Model):
    self.directory = directory
    self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
    self.training_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                        name='training_seconds')
    # Slot variables must exist before a restore can fill them (Keras' newer optimizers
    # create them on the first update, where a deferred restore would not find them).
    model.optimizer.build(model.trainable_variables)
    # Keras' logs of the completed epochs and the training curve's points, as JSON inside the
    # checkpoint: saved with the weights in one step, so a kill cannot leave them out of step.
    self._epochs_json = tf.Variable('[]', dtype=tf.string, trainable=False, name='epochs')
    self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                           global_step=self.global_step,
                                           training_seconds=self.training_seconds,
                                           epochs=self._epochs_json)
    self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=1)
    self.epochs: List[Dict] = []  # Keras' logs of the epochs completed, in order.
    self.curve: List[Dict] = []  # training_callbacks.TrainingCurve's points, in order.

  def restore(self) -> int:
    """Loads the latest checkpoint if there is one; returns the global step reached (0 if none)."""
    latest = self._manager.latest_checkpoint
    if not latest:
      return 0
    self._checkpoint.restore(latest).assert_existing_objects_matched()
    logged = json.loads(self._epochs_json.numpy().decode('utf-8'))
    # A list: a checkpoint written before the curve was kept.
    logged = {'epochs': logged} if isinstance(logged, list) else logged
    self.epochs[:], self.curve[:] = logged['epochs'], logged.get('curve', [])
    return int(self.global_step.numpy())

  def save(self) -> None:
    self._epochs_json.assign(json.dumps({'epochs': self.epochs, 'curve': self.curve},
                                        default=float))
    self._manager.save(checkpoint_number=int(self.global_step.numpy()))

  def remove(self) -> None:
    """Deletes the checkpoint once the model is exported (nothing left to resume)."""
    if tf.io.gfile.exists(self.directory):
      tf.io.gfile.rmtree(self.directory)


class Checkpointing(keras.callbacks.Callback):
  """Counts steps and training seconds, checkpoints every epoch and every `save_seconds`,
  and stops training once `budget_seconds` (0 = none) of training time are spent.

  With a time budget, `clock` (a schedule's position in steps, models/schedules.py) is set
  before every batch to the share of the budget spent times `schedule_steps`.
  """

  def __init__(self, state: TrainingState, save_seconds: float, budget_seconds: float = 0.0,
               clock: Optional[tf.Variable] = None, schedule_steps: int = 0):
    super().__init__()
    self.state, self.save_seconds, self.budget_seconds = state, save_seconds, budget_seconds
    self.clock, self.schedule_steps = clock, schedule_steps
    self.saves = 0
    self.stopped_by_budget = False

  def _elapsed(self) -> float:
    return self._seconds_before + time.monotonic() - self._segment_start

  def on_train_begin(self, logs=None):
    self._seconds_before = float(self.state.training_seconds.numpy())
    self._segment_start = self._last_save = time.monotonic()

  def _save(self) -> None:
    self.state.training_seconds.assign(self._elapsed())
    self.state.save()
    self.saves += 1
    self._last_save = time.monotonic()

  def on_train_batch_begin(self, batch, logs=None):
    if self.clock is not None and self.budget_seconds:
      self.clock.assign(self.schedule_steps * min(self._elapsed() / self.budget_seconds, 1.0))

  def on_train_batch_end(self, batch, logs=None):
    self.state.global_step.assign_add(1)
    if self.budget_seconds and self._elapsed() >= self.budget_seconds:
      self.stopped_by_budget = True
      self.model.stop_training = True
    elif (time.monotonic() - self._last_save >= self.save_seconds
          and batch + 1 < ((self.params or {}).get('steps') or math.inf)):
      # Never on an epoch's last batch: that checkpoint would hold the epoch's steps without
      # its log, and a resume would start the next epoch with the log lost. on_epoch_end
      # saves both a moment later.
      self._save()

  def on_epoch_end(self, epoch, logs=None):
    self.state.epochs.append({'epoch': epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
    self._save()

  def on_train_end(self, logs=None):
    self.state.training_seconds.assign(self._elapsed())

  def budget_spent(self) -> bool:
    return bool(self.budget_seconds) and float(
        self.state.training_seconds.numpy()) >= self.budget_seconds


def fit(model: keras.Model, batches_from, steps_per_epoch: int, total_steps: int,
        callbacks: List[keras.callbacks.Callback], checkpointing: Optional[Checkpointing],
        validation_data=None) -> Dict[str, List[float]]:
  """Fits from the checkpoint's step (restored by `checkpointing.state.restore()` before) to
  `total_steps`, or until the time budget is spent.

  `batches_from(step)` is the repeated training stream with its first `step` batches skipped.
  A resumed epoch that was interrupted is finished first, with the steps it has left; a budget
  that ends inside an epoch (a number of images) ends with that partial epoch.
  Returns Keras' history over every epoch of every attempt.
  """
  state = checkpointing.state if checkpointing else None
  start = int(state.global_step.numpy()) if state else 0
  if start:
    logging.info('Resuming from the checkpoint in %s: step %d (epoch %d, %.0f s trained)',
                 state.directory, start, start // steps_per_epoch + 1,
                 float(state.training_seconds.numpy()))
  all_callbacks = callbacks + ([checkpointing] if checkpointing else [])
  for first_epoch, epochs, steps, from_step in fit_segments(start, steps_per_epoch,
                                                            total_steps):
    if checkpointing and checkpointing.budget_spent():
      checkpointing.stopped_by_budget = True
      break
    model.fit(batches_from(from_step), initial_epoch=first_epoch, epochs=first_epoch + epochs,
              steps_per_epoch=steps, validation_data=validation_data, verbose=0,
              callbacks=all_callbacks)
    if checkpointing and checkpointing.stopped_by_budget:
      break
  if state:
    epochs_logged = state.epochs
  else:
    epochs_logged = [{'epoch': i + 1, **logs} for i, logs in enumerate(_history_rows(model))]
  return as_columns(epochs_logged, leave_out=('epoch',))


def as_columns(rows: List[Dict], leave_out: Tuple[str, ...] = ()) -> Dict[str, List[float]]:
  """Rows of logs ([{'loss': 2.0, ...}, ...]) as columns ({'loss': [2.0, ...], ...}), the
  shape history.json keeps its epoch rows and training curve in."""
  columns: Dict[str, List[float]] = {}
  for row in rows:
    for key, value in row.items():
      if key not in leave_out:
        columns.setdefault(key, []).append(value)
  return columns


def fit_segments(start: int, steps_per_epoch: int,
                 total_steps: int) -> List[Tuple[int, int, int, int]]:
  """The fit() calls from step `start` to `total_steps`: (first epoch, epochs, steps per
  epoch, first step). Keras' epochs within one call have equal steps, so the rest of an
  interrupted epoch and a final partial epoch get calls of their own."""
  segments, step = [], start
  while step < total_steps:
    epoch, offset = divmod(step, steps_per_epoch)
    whole_epochs = total_steps // steps_per_epoch - epoch
    if offset == 0 and whole_epochs > 0:
      segments.append((epoch, whole_epochs, steps_per_epoch, step))
      step += whole_epochs * steps_per_epoch
    else:
      end = min((epoch + 1) * steps_per_epoch, total_steps)
      segments.append((epoch, 1, end - step, step))
      step = end
  return segments


def _history_rows(model: keras.Model) -> List[Dict]:
  history = model.history.history if model.history else {}
  count = max((len(v) for v in history.values()), default=0)
  return [{k: v[i] for k, v in history.items()} for i in range(count)]
