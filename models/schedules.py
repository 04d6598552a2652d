"""Optimisers and learning-rate schedules named in TrainingConfig (pipeline/config.py).

  constant   the base rate throughout (after an optional linear warm-up)
  cosine     linear warm-up to the base rate, then cosine decay to `final_fraction` of it
  one_cycle  Smith's one-cycle: up from base/25 to base over the warm-up (30% of the steps
             when no warm-up is given), then cosine down to base/10^4
"""
import math

import tensorflow as tf
import tf_keras as keras

SCHEDULES = ('constant', 'cosine', 'one_cycle')
OPTIMIZERS = ('adam', 'adamw', 'sgd')
# Weight decay shrinks kernels only: BatchNorm scales/offsets and biases keep their values.
_NO_DECAY = ('_bn', 'bias')


@keras.saving.register_keras_serializable(package='quickdraw')
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear from `start_fraction` x base to base over `warmup_steps`, then cosine to
  `final_fraction` x base at `total_steps` (held there after)."""

  def __init__(self, base_rate: float, total_steps: int, warmup_steps: int = 0,
               start_fraction: float = 0.0, final_fraction: float = 0.0):
    super().__init__()
    self.base_rate, self.total_steps, self.warmup_steps = base_rate, total_steps, warmup_steps
    self.start_fraction, self.final_fraction = start_fraction, final_fraction

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = tf.cast(self.warmup_steps, tf.float32)
    decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
    rising = self.start_fraction + (1.0 - self.start_fraction) * step / tf.maximum(warmup, 1.0)
    progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
    falling = self.final_fraction + (1.0 - self.final_fraction) * 0.5 * (
        1.0 + tf.cos(math.pi * progress))
    return self.base_rate * tf.where(step < warmup, rising, falling)

  def get_config(self):
    return {'base_rate': self.base_rate, 'total_steps': self.total_steps,
            'warmup_steps': self.warmup_steps, 'start_fraction': self.start_fraction,
            'final_fraction': self.final_fraction}


def learning_rate(schedule: str, base_rate: float, total_steps: int, warmup_steps: int = 0):
  """A rate or schedule for the optimiser; `total_steps` = steps per epoch x epochs."""
  if schedule == 'constant':
    if not warmup_steps:
      return base_rate
    return WarmupCosine(base_rate, total_steps, warmup_steps, final_fraction=1.0)
  if schedule == 'cosine':
    return WarmupCosine(base_rate, total_steps, warmup_steps)
  if schedule == 'one_cycle':
    return WarmupCosine(base_rate, total_steps, warmup_steps or int(0.3 * total_steps),
                        start_fraction=1 / 25, final_fraction=1e-4)
  raise ValueError(f'unknown lr_schedule {schedule!r}; choose one of {", ".join(SCHEDULES)}')


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
