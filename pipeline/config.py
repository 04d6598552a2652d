"""The pipeline's one configuration object and its named profiles.

Every number that shapes a run (data size, image size, epochs, thresholds, paths) lives
here; `create_pipeline(config)` is a pure function of a `PipelineConfig`.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

PUBLIC_BUCKET = 'https://storage.googleapis.com/quickdraw_dataset/full/simplified/'
MODEL_NAMES = ('sknet', 'skresnet')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """How one model is fitted; one per model so a slow model can get fewer epochs."""
  epochs: int = 3
  batch_size: int = 32
  # Adam 1e-3 diverged early in short CPU runs (skNet, 10 x 120, 2 epochs: 26% training
  # accuracy vs 55% with 3e-4).
  learning_rate: float = 3e-4
  # Keras' default 0.99 lags the weights in short runs (see DESIGN.md, "BatchNorm trap");
  # the Trainer also re-estimates the statistics over training data after fitting.
  batchnorm_momentum: float = 0.9
  batchnorm_recalibration_batches: int = 20
  # Optimiser 'adam', 'adamw' or 'sgd' (Nesterov 0.9); lr_schedule 'constant', 'cosine'
  # (linear warm-up, then cosine) or 'one_cycle' (models/schedules.py).
  optimizer: str = 'adam'
  lr_schedule: str = 'constant'
  warmup_epochs: float = 0.0
  # Decoupled weight decay on kernels (not BatchNorm or biases); 0 = none.
  weight_decay: float = 0.0
  label_smoothing: float = 0.0
  # Random affine augmentation inside tf.data (models/augmentation.py): largest shift (fraction
  # of the side), scale change (fraction) and rotation (degrees); stroke_jitter is the share of
  # images whose strokes are thickened. Off by default: benchmarks/README.md, "## Training".
  augment: bool = False
  augment_shift: float = 0.08
  augment_scale: float = 0.1
  augment_rotation_degrees: float = 10.0
  augment_stroke_jitter: float = 0.0
  # Percent of the training drawings (by a hash of drawing_id, never the test split) held out
  # for validation; with it, the best epoch's weights by validation loss are kept, and
  # early_stopping_patience > 0 stops after that many epochs without improvement.
  validation_percent: int = 0
  early_stopping_patience: int = 0
  # Continue from the latest model this Trainer produced (TFX base_model through a resolver).
  warm_start: bool = False
  # For GPU workers; on this 2-core CPU neither helped (benchmarks/README.md, "## Training").
  mixed_precision: bool = False
  xla: bool = False


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything a run depends on. Build one with `profile(name, **overrides)`."""
  profile: str
  num_categories: int
  train_per_category: int
  test_per_category: int
  training: Dict[str, TrainingConfig]
  seed: int = 42
  # Explicit category names; when empty, `num_categories` are drawn at random (seeded).
  categories: Tuple[str, ...] = ()
  image_size: int = 128
  # Side of the PNG the strokes are drawn on; simplified strokes live in 0..255.
  render_size: int = 256
  stroke_width: int = 3
  # Evaluator: drawings whose train-split accuracy is measured (0 = the whole split).
  train_eval_max_examples: int = 0
  # Blessing thresholds: a model is pushed only when it reaches both.
  min_test_accuracy: float = 0.0
  min_map: float = 0.0
  source: str = ''
  pipeline_name: str = 'quickdraw-tfx'
  output_dir: str = 'outputs'
  beam_pipeline_args: Tuple[str, ...] = ('--direct_running_mode=in_memory', '--direct_num_workers=1')
  models: Tuple[str, ...] = MODEL_NAMES
  enable_cache: bool = True

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, 'pipeline_root', self.pipeline_name)

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, 'metadata', self.pipeline_name, 'metadata.sqlite')

  @property
  def registry_dir(self) -> str:
    return os.path.join(self.output_dir, 'registry')

  def replace(self, **changes) -> 'PipelineConfig':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _both(**kwargs) -> Dict[str, TrainingConfig]:
  return {name: TrainingConfig(**kwargs) for name in MODEL_NAMES}


# smoke: the whole pipeline in a couple of minutes for tests; accuracy is not the point.
# default: `make run`; sized from measured CPU speed (skNet ~32 img/s, skResNet ~8 img/s
#   training at 128x128) to finish in about 15 minutes with clearly better than chance results.
# full: the specification; a GPU job (Kubeflow) or a very long CPU run.
PROFILES: Dict[str, PipelineConfig] = {
    'smoke': PipelineConfig(
        profile='smoke', num_categories=3, train_per_category=24, test_per_category=8,
        training=_both(epochs=1, batch_size=16, batchnorm_recalibration_batches=5),
        pipeline_name='quickdraw-tfx-smoke'),
    'default': PipelineConfig(
        profile='default', num_categories=10, train_per_category=120, test_per_category=30,
        training={
            'sknet': TrainingConfig(epochs=3, batch_size=32),
            'skresnet': TrainingConfig(epochs=2, batch_size=32),
        },
        min_test_accuracy=0.2, min_map=0.15),
    'full': PipelineConfig(
        profile='full', num_categories=100, train_per_category=1000, test_per_category=50,
        training=_both(epochs=30, batch_size=64, batchnorm_momentum=0.99,
                       batchnorm_recalibration_batches=200),
        train_eval_max_examples=20000, min_test_accuracy=0.5, min_map=0.3,
        pipeline_name='quickdraw-tfx-full'),
}


def default_source(project_root: Optional[str] = None) -> str:
  """QUICKDRAW_SOURCE if set; else ../shared/quickdraw/simplified if present; else the public bucket."""
  if os.environ.get('QUICKDRAW_SOURCE'):
    return os.environ['QUICKDRAW_SOURCE']
  root = project_root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  shared = os.path.normpath(os.path.join(root, '..', 'shared', 'quickdraw', 'simplified'))
  if os.path.isdir(shared):
    return shared
  return PUBLIC_BUCKET


def profile(name: str, **overrides) -> PipelineConfig:
  """The named profile with `overrides` applied; the source defaults as `default_source()`."""
  if name not in PROFILES:
    raise ValueError(f'unknown profile {name!r}; choose one of {", ".join(PROFILES)}')
  config = PROFILES[name]
  if not overrides.get('source'):
    overrides['source'] = default_source()
  return config.replace(**overrides)


def profile_names() -> List[str]:
  return list(PROFILES)
