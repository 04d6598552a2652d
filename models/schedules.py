"""Optimisers and budget-aware learning-rate schedules named in TrainingConfig (pipeline/config.py).

Every schedule is laid over the training budget, whatever ends training (epochs, a number of
training images or minutes), and reaches its end value exactly when the budget is spent:

  constant   the peak rate throughout (after an optional linear warm-up)
  linear     linear warm-up to the peak, then linear decay to zero at the end of the budget
             (Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020)
  cosine     linear warm-up to the peak, then cosine decay to zero (Keras' CosineDecay)
  one_cycle  Smith's one-cycle: up from peak/25 to the peak over the warm-up (30% of the
             budget when none is given), then cosine down to peak/10^4

The position on the curve is `max(step, clock)` in steps: with a budget of steps (epochs or
images) `clock` stays 0; with a time budget the Trainer sets it to the share of the budget's
seconds spent, times the schedule's steps, so the rate reaches zero when the minutes run out
however fast the machine is (models/resume.py keeps it across resumed attempts).
"""
from typing import Optional

import tensorflow as tf
import tf_keras as keras

SCHEDULES = ('constant', 'linear', 'cosine', 'one_cycle')
OPTIMIZERS = ('adam', 'adamw', 'sgd')
# Weight decay shrinks kernels only: BatchNorm scales/offsets and biases keep their values.
_NO_DECAY = ('_bn', 'bias')


@keras.saving.register_keras_serializable(package='quickdraw')
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear from `start_rate` to `peak_rate` over `warmup_steps`, then linear to `end_rate`
  at `total_steps` (held there after). Keras has warm-up only on CosineDecay."""

  def __init__(self, peak_rate: float, total_steps: int, warmup_steps: int = 0,
               start_rate: float = 0.0, end_rate: float = 0.0):
    super().__init__()
    self.peak_rate, self.total_steps, self.warmup_steps = peak_rate, total_steps, warmup_steps
    self.start_rate, self.end_rate = start_rate, end_rate

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = float(self.warmup_steps)
    rising = self.start_rate + (self.peak_rate - self.start_rate) * step / max(warmup, 1.0)
    progress = tf.clip_by_value((step - warmup) / max(self.total_steps - warmup, 1.0), 0.0, 1.0)
    falling = self.peak_rate + (self.end_rate - self.peak_rate) * progress
    return tf.where(step < warmup, rising, falling)

  def get_config(self):
    return {'peak_rate': self.peak_rate, 'total_steps': self.total_steps,
            'warmup_steps': self.warmup_steps, 'start_rate': self.start_rate,
            'end_rate': self.end_rate}


class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """`shape` (a schedule over `total_steps`) read at max(step, clock): see the module doc."""

  def __init__(self, shape: keras.optimizers.schedules.LearningRateSchedule, total_steps: int,
               clock: Optional[tf.Variable] = None):
    super().__init__()
    self.shape, self.total_steps, self.clock = shape, total_steps, clock

  def position(self, step):
    step = tf.cast(step, tf.float32)
    return step if self.clock is None else tf.maximum(step, tf.cast(self.clock, tf.float32))

  def __call__(self, step):
    return self.shape(self.position(step))

  def get_config(self):
    # The clock is the Trainer's state, not a setting: a reloaded schedule counts steps.
    return {'shape': keras.optimizers.schedules.serialize(self.shape),
            'total_steps': self.total_steps}

  @classmethod
  def from_config(cls, config):
    return cls(keras.optimizers.schedules.deserialize(config['shape']), config['total_steps'])


def learning_rate(schedule: str, peak_rate: float, total_steps: int, warmup_steps: int = 0,
                  clock: Optional[tf.Variable] = None) -> BudgetSchedule:
  """The named schedule laid over `total_steps`, the steps the budget allows (for a time
  budget, the most it could allow); `clock` is the time budget's position (see above)."""
  total_steps = max(int(total_steps), 1)
  warmup_steps = min(int(warmup_steps), total_steps)
  if schedule == 'constant':
    shape = LinearWarmupDecay(peak_rate, total_steps, warmup_steps, end_rate=peak_rate)
  elif schedule == 'linear':
    shape = LinearWarmupDecay(peak_rate, total_steps, warmup_steps)
  elif schedule == 'cosine':
    shape = keras.optimizers.schedules.CosineDecay(
        0.0, max(total_steps - warmup_steps, 1), warmup_target=peak_rate,
        warmup_steps=warmup_steps)
  elif schedule == 'one_cycle':
    warmup_steps = warmup_steps or int(0.3 * total_steps)
    shape = keras.optimizers.schedules.CosineDecay(
        peak_rate / 25, max(total_steps - warmup_steps, 1), alpha=1e-4,
        warmup_target=peak_rate, warmup_steps=warmup_steps)
  else:
    raise ValueError(f'unknown lr_schedule {schedule!r}; choose one of {", ".join(SCHEDULES)}')
  return BudgetSchedule(shape, total_steps, clock)


def current_rate(optimizer: keras.optimizers.Optimizer) -> float:
  """The rate the schedule gives at the optimiser's step (and clock): the next step's rate,
  zero once a decaying schedule has spent its budget. (Keras' `learning_rate` property is
  the rate of the step before.)"""
  rate = getattr(optimizer, '_learning_rate', None)
  if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
    return float(rate(optimizer.iterations))
  return float(keras.backend.get_value(optimizer.learning_rate))


def optimizer(name: str, rate, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
  """Adam, AdamW (decoupled weight decay) or SGD with Nesterov momentum 0.9."""
  decay = weight_decay or None
  if name == 'adam':
    result = keras.optimizers.Adam(rate, weight_decay=decay)
  elif name == 'adamw':
    result = keras.optimizers.AdamW(rate, weight_decay=weight_decay)
  elif name == 'sgd':
    result = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
  else:
    raise ValueError(f'unknown optimizer {name!r}; choose one of {", ".join(OPTIMIZERS)}')
  if weight_decay:
    result.exclude_from_weight_decay(var_names=list(_NO_DECAY))
  return result
