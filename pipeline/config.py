"""The pipeline's one configuration object and its named profiles.

Every number that shapes a run (data size, image size, epochs, thresholds, paths) lives
here; `create_pipeline(config)` is a pure function of a `PipelineConfig`.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from domain import registry_store

PUBLIC_BUCKET = 'https://storage.googleapis.com/quickdraw_dataset/full/simplified/'
MODEL_NAMES = ('sknet', 'skresnet')


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """How one model is fitted (one per model; the profiles give both the same budget)."""
  # The budget: `epochs` passes over the training drawings, or `training_images` images when
  # that is fewer (0 = no image limit; epochs 0 = no epoch limit), or `time_budget_minutes`
  # of fitting when that ends first. The schedule is laid over it (models/budget.py).
  epochs: int = 3
  training_images: int = 0
  batch_size: int = 32
  # Drawings the training stream shuffles among (0 = the whole training split). ExampleGen
  # writes drawings grouped by category, so a buffer smaller than the split trains on a few
  # categories at a time (10,000 of 100,000 held 21-23 of the 100 categories).
  shuffle_buffer: int = 0
  # The peak rate of the schedule (benchmarks/README.md, "Training recipes under a budget").
  learning_rate: float = 3e-4
  # Keras' default 0.99 lags the weights in short runs (docs/architecture.md, "BatchNorm");
  # the Trainer also re-estimates the statistics over training data after fitting.
  batchnorm_momentum: float = 0.9
  batchnorm_recalibration_batches: int = 20
  # Optimiser 'adam', 'adamw' or 'sgd' (Nesterov 0.9); lr_schedule 'constant', 'linear' or
  # 'cosine' (to zero at the budget's end) or 'one_cycle' (models/schedules.py); the warm-up
  # is a share of the budget.
  optimizer: str = 'adam'
  lr_schedule: str = 'constant'
  warmup_fraction: float = 0.0
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
  # 'auto': mixed float16 on a GPU, mixed bfloat16 on a CPU with bfloat16 instructions when a
  # short check finds it faster, else float32 (models/precision.py); or a Keras policy name.
  precision: str = 'auto'
  # On this 2-core CPU XLA was slower (benchmarks/README.md, "## Training").
  xla: bool = False
  # Training stops after this many minutes of fitting (0 = after `epochs`), summed over
  # resumed attempts; the epochs reached are reported.
  time_budget_minutes: float = 0.0
  # A killed Trainer resumes from a checkpoint written at every epoch end and this often.
  checkpoint_seconds: float = 180.0

  def passes(self, training_drawings: int) -> float:
    """Passes over `training_drawings` the budget allows at most (a time budget may stop
    training earlier; epochs 0 without images is no training)."""
    limits = [float(self.epochs)] if self.epochs >= 1 else []
    if self.training_images:
      limits.append(self.training_images / max(training_drawings, 1))
    return min(limits, default=0.0)


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
  # Change thresholds: a model is blessed only when its test accuracy (mAP) is at most this far
  # below the baseline's, the newest model of the same Trainer blessed in an earlier run (ML
  # Metadata; 0 = not worse). None: no baseline. The first blessing is rubber-stamped.
  max_accuracy_drop: Optional[float] = None
  max_map_drop: Optional[float] = None
  # Evaluator: also the mAP of raw image_size x image_size pixels as embeddings (a floor).
  raw_pixels_floor: bool = True
  source: str = ''
  pipeline_name: str = 'quickdraw-tfx'
  output_dir: str = 'outputs'
  beam_pipeline_args: Tuple[str, ...] = ('--direct_running_mode=in_memory', '--direct_num_workers=1')
  models: Tuple[str, ...] = MODEL_NAMES
  enable_cache: bool = True
  # ExampleGen bad input: a category file with more than this share of unusable lines (counted
  # by reason in the sampling manifest) fails the run; 0 fails on the first one.
  max_skip_ratio: float = 0.01
  # Keep only drawings the game recognized, where the lines carry `recognized`.
  recognized_only: bool = False
  # Pusher: the splits whose drawings form the search gallery pushed with each model (the test
  # split's embeddings come from the Evaluator; other splits are embedded by the Pusher).
  gallery_splits: Tuple[str, ...] = ('test',)

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, 'pipeline_root', self.pipeline_name)

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, 'metadata', self.pipeline_name, 'metadata.sqlite')

  @property
  def registry_dir(self) -> str:
    return os.path.join(self.output_dir, registry_store.REGISTRY_FOLDER)

  def __post_init__(self):
    for name in ('max_accuracy_drop', 'max_map_drop'):
      value = getattr(self, name)
      if value is None:
        continue
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f'{name}: expected null or a number from 0 to 1, got {value!r}')
      object.__setattr__(self, name, float(value))

  def replace(self, **changes) -> 'PipelineConfig':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _both(**kwargs) -> Dict[str, TrainingConfig]:
  return {name: TrainingConfig(**kwargs) for name in MODEL_NAMES}


# Every profile's recipe, chosen by the study in benchmarks/README.md ("Training recipes under
# a budget"): a linear warm-up over a quarter of the budget to the peak, then linear decay to
# zero exactly where the budget ends (epochs, images or minutes). A short warm-up is not enough:
# Adam's first steps move each of fc_1's 16,384 input weights by about the rate, all at once.
RECIPE = dict(optimizer='adam', lr_schedule='linear', learning_rate=3e-4, warmup_fraction=0.25)


# Both models always get the same training budget: the comparison between them is the point.
# smoke: the whole pipeline in a couple of minutes for tests; accuracy is not the point.
# default: `make run`, a real run: the same training images on every CPU, few enough that a
#   2-core CPU without AVX-512 finishes in well under an hour (measured times: README,
#   "Results of the default profile").
# spec: the specification's sample (100 x (1000 + 50) at 128x128) on one 2-core CPU machine:
#   each model trains for the same 35 minutes (the epochs reached are reported), train
#   accuracy on a random 5,000 of the training drawings (measured times: README).
# full: the specification with many epochs; a GPU job (Kubeflow) or a very long CPU run.
# The specification's sample (spec, full) runs its Beam stages on two worker processes, which
# sample and render categories in parallel; small profiles keep in_memory, where the workers'
# start-up costs more than it saves (benchmarks/README.md, "ExampleGen throughput").
TWO_BEAM_WORKERS = ('--direct_running_mode=multi_processing', '--direct_num_workers=2')
PROFILES: Dict[str, PipelineConfig] = {
    'smoke': PipelineConfig(
        profile='smoke', num_categories=3, train_per_category=24, test_per_category=8,
        training=_both(epochs=1, batch_size=16, batchnorm_recalibration_batches=5, **RECIPE),
        pipeline_name='quickdraw-tfx-smoke'),
    'default': PipelineConfig(
        profile='default', num_categories=10, train_per_category=120, test_per_category=30,
        # 2,400 training images (two passes over the 1,200 drawings) per model.
        training=_both(epochs=0, training_images=2400, batch_size=32, **RECIPE),
        min_test_accuracy=0.2, min_map=0.15, max_accuracy_drop=0.05, max_map_drop=0.05),
    'spec': PipelineConfig(
        profile='spec', num_categories=100, train_per_category=1000, test_per_category=50,
        # A peak of 1e-3: ahead of 3e-4 on the specification's sample (benchmarks/README.md).
        training=_both(epochs=20, batch_size=32, time_budget_minutes=35.0,
                       batchnorm_recalibration_batches=50, **dict(RECIPE, learning_rate=1e-3)),
        train_eval_max_examples=5000, min_test_accuracy=0.1, min_map=0.05,
        max_accuracy_drop=0.05, max_map_drop=0.05,
        beam_pipeline_args=TWO_BEAM_WORKERS, pipeline_name='quickdraw-tfx-spec'),
    'full': PipelineConfig(
        profile='full', num_categories=100, train_per_category=1000, test_per_category=50,
        # Batch 64 with the peak rate doubled, laid over the 30 epochs; no augmentation, which
        # nothing measured here supports yet.
        training=_both(epochs=30, batch_size=64, batchnorm_momentum=0.99,
                       batchnorm_recalibration_batches=200,
                       **dict(RECIPE, learning_rate=6e-4)),
        train_eval_max_examples=20000, min_test_accuracy=0.5, min_map=0.3,
        max_accuracy_drop=0.02, max_map_drop=0.02,
        beam_pipeline_args=TWO_BEAM_WORKERS, pipeline_name='quickdraw-tfx-full'),
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


def with_overrides(config: PipelineConfig, overrides: Dict, origin: str = 'overrides') -> PipelineConfig:
  """`config` with `overrides` (e.g. from a YAML file) applied: top-level PipelineConfig fields,
  and under `training`, per-model TrainingConfig fields merged onto the profile's. Unknown keys
  and wrong types raise ValueError naming `origin` and the key."""
  fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
  changes = {}
  for key, value in overrides.items():
    if key not in fields or key == 'profile':
      raise ValueError(f'{origin}: unknown setting {key!r}; settings: '
                       f'{", ".join(sorted(n for n in fields if n != "profile"))}')
    if key == 'training':
      changes[key] = _training_overrides(config.training, value, origin)
    else:
      changes[key] = _coerce(getattr(config, key), value, f'{origin}: {key}')
  if 'categories' in changes and 'num_categories' not in changes and changes['categories']:
    changes['num_categories'] = len(changes['categories'])
  try:
    return config.replace(**changes)
  except ValueError as e:  # A setting PipelineConfig itself refuses (see __post_init__).
    raise ValueError(f'{origin}: {e}') from e


def _training_overrides(current: Dict[str, TrainingConfig], value, origin: str):
  if not isinstance(value, dict):
    raise ValueError(f'{origin}: training: expected a mapping of model name to settings')
  known = {f.name for f in dataclasses.fields(TrainingConfig)}
  merged = dict(current)
  for model, settings in value.items():
    if model not in merged:
      raise ValueError(f'{origin}: training: unknown model {model!r}; models: '
                       f'{", ".join(merged)}')
    if not isinstance(settings, dict) or not set(settings) <= known:
      unknown = sorted(set(settings) - known) if isinstance(settings, dict) else settings
      raise ValueError(f'{origin}: training.{model}: unknown settings {unknown}; settings: '
                       f'{", ".join(sorted(known))}')
    merged[model] = dataclasses.replace(merged[model], **{
        k: _coerce(getattr(merged[model], k), v, f'{origin}: training.{model}.{k}')
        for k, v in settings.items()})
  return merged


def _coerce(current, value, where: str):
  """`value` in the type of the setting it replaces (lists become tuples; ints pass as floats)."""
  if isinstance(current, tuple):
    if isinstance(value, str):
      value = [v.strip() for v in value.split(',') if v.strip()]
    if not isinstance(value, (list, tuple)):
      raise ValueError(f'{where}: expected a list, got {value!r}')
    return tuple(value)
  if isinstance(current, bool):
    if not isinstance(value, bool):
      raise ValueError(f'{where}: expected true or false, got {value!r}')
    return value
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if current is not None and not isinstance(value, type(current)):
    raise ValueError(f'{where}: expected {type(current).__name__}, got {value!r}')
  return value


def load_overrides(path: str) -> Dict:
  """A YAML file of settings (see with_overrides); a clear error for an unreadable file."""
  import yaml  # pylint: disable=g-import-not-at-top
  try:
    with open(path) as f:
      data = yaml.safe_load(f)
  except OSError as e:
    raise ValueError(f'{path}: cannot read the configuration file ({e.strerror})') from e
  except yaml.YAMLError as e:
    mark = getattr(e, 'problem_mark', None)
    where = f'{path}:{mark.line + 1}' if mark else path
    raise ValueError(f'{where}: not valid YAML ({getattr(e, "problem", e)})') from e
  if data is None:
    return {}
  if not isinstance(data, dict):
    raise ValueError(f'{path}: expected a mapping of settings at the top level')
  return data


def load(profile_name: Optional[str] = None, config_file: Optional[str] = None) -> PipelineConfig:
  """A profile (`profile_name`, else the file's `profile`, else default) with the YAML
  `config_file`'s settings applied. ValueError says what is wrong and where."""
  from_file = load_overrides(config_file) if config_file else {}
  base = from_file.pop('profile', None)
  base = profile_name or base or 'default'  # A --profile flag beats the file's profile.
  return with_overrides(profile(base), from_file, origin=config_file or 'overrides')
