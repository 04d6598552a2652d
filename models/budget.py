"""The training budget: what ends training (epochs, training images or minutes) and the steps
it allows, over which the learning-rate schedule is laid (models/schedules.py)."""
import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Budget:
  """`kind` is what ends training: 'epochs', 'images' or 'minutes' (whichever of the
  TrainingConfig's limits is set; minutes stop earlier when the epochs or images take longer)."""
  kind: str
  value: float
  total_steps: int
  steps_per_epoch: int
  seconds: float = 0.0

  @property
  def epochs(self) -> int:
    """Keras epochs the steps span (the last one may be partial)."""
    return math.ceil(self.total_steps / self.steps_per_epoch)

  def to_dict(self) -> dict:
    return {'kind': self.kind, 'value': self.value, 'total_steps': self.total_steps,
            'steps_per_epoch': self.steps_per_epoch, 'epochs': self.epochs,
            'seconds': self.seconds}


def training_budget(epochs: int, images: int, minutes: float, num_train: int,
                    batch_size: int) -> Budget:
  """The budget of `epochs` passes over `num_train` drawings, or of `images` training images
  when that is fewer (0 = no image limit), or of `minutes` of fitting (0 = none).

  Epochs 0 without images is no training at all (a warm-started model exported as it is)."""
  if epochs < 0 or images < 0 or minutes < 0:
    raise ValueError(f'a training budget cannot be negative: epochs {epochs}, images {images}, '
                     f'minutes {minutes}')
  steps_per_epoch = max(math.ceil(num_train / batch_size), 1)
  if epochs < 1 and not images:
    if minutes:
      raise ValueError('a time budget needs epochs >= 1 or a number of training images too: '
                       'they fix the steps the learning-rate schedule is laid over')
    return Budget('epochs', 0, 0, steps_per_epoch)
  total_steps = steps_per_epoch * epochs if epochs >= 1 else math.inf
  if images:
    # Epochs end with a partial batch: count whole passes, then the batches of the rest.
    passes, rest = divmod(int(images), max(num_train, 1))
    total_steps = min(total_steps, passes * steps_per_epoch + math.ceil(rest / batch_size))
  total_steps = max(int(total_steps), 1)
  if minutes:
    return Budget('minutes', float(minutes), total_steps, steps_per_epoch, 60.0 * minutes)
  if images and (epochs < 1 or total_steps < steps_per_epoch * epochs):
    return Budget('images', int(images), total_steps, steps_per_epoch)
  return Budget('epochs', epochs, total_steps, steps_per_epoch)
