"""The Trainers' shared run_fn: the model is chosen by custom_config['model_name'].

Examples arrive raw (PNG bytes); the transform graph decodes and resizes them on the fly
in tf.data, and the exported SavedModel applies the same graph to what clients send
(models/signatures.py). custom_config carries a TrainingConfig (pipeline/config.py).
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import architectures
from models import augmentation as augmentation_lib
from models import batchnorm
from models import budget as budget_lib
from models import distribution
from models import features
from models import precision
from models import resume as resume_lib
from models import schedules
from models import signatures
from models import training_callbacks
from models.training_outputs import HISTORY_FILE, TRAINING_RUN_FILE, TRAINING_RUN_KEYS

# A killed Trainer loses at most this much training (checkpoints also at every epoch end).
CHECKPOINT_SECONDS = 180.0
# Points of history.json's training curve per epoch (a point every 5,000 images of the spec's
# 100,000), so a budget under one epoch still draws a curve.
CURVE_POINTS_PER_EPOCH = 20
# Hash buckets for carving the validation split out of the training drawings (percent).
_VALIDATION_BUCKETS = 100


def _in_validation(drawing_id: tf.Tensor, validation_percent: int) -> tf.Tensor:
  """A fixed, seed-independent choice: the same drawings are held out in every run."""
  return tf.strings.to_hash_bucket_fast(drawing_id, _VALIDATION_BUCKETS) < validation_percent


def shuffle_buffer_size(setting: int, records: int) -> int:
  """The training stream's shuffle buffer: `setting`, or with 0 every record of the split.
  ExampleGen writes the drawings grouped by category, so only a buffer as large as the split
  shuffles them uniformly (its serialized records: 175 MB at 100,000)."""
  return setting if setting > 0 else max(records, 1)


def _dataset(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, shuffle: bool,
             seed: int, shuffle_buffer: int, part: str = 'all', validation_percent: int = 0,
             augmentation: Optional[augmentation_lib.Augmentation] = None,
             repeat: bool = False, skip_batches: int = 0) -> tf.data.Dataset:
  """(image, label) batches, one pass over the files (or endless passes with `repeat`, each
  reshuffled by the seed among `shuffle_buffer` records); the transform graph runs in tf.data.

  `part` is 'all', or 'train' / 'validation' for the two sides of the validation split.
  `skip_batches` drops the first batches of the stream before they are decoded: a resumed
  run continues where the interrupted one stopped. Augmentation runs on whole batches after
  the transform, in parallel with training.
  """
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle,
                                     shuffle_seed=seed, shuffle_buffer_size=shuffle_buffer,
                                     num_epochs=1),
      tf_transform_output.raw_metadata.schema)
  if part != 'all' and validation_percent > 0:
    keep_validation = part == 'validation'
    dataset = dataset.unbatch().filter(
        lambda raw: tf.equal(_in_validation(raw[features.ID_KEY], validation_percent),
                             keep_validation)).batch(batch_size)
  if repeat:
    dataset = dataset.repeat()
  if skip_batches:
    dataset = dataset.skip(skip_batches)
  transform_layer = tf_transform_output.transform_features_layer()

  def transform(raw):
    transformed = transform_layer({key: raw[key] for key in
                                   (features.IMAGE_KEY, features.CATEGORY_KEY)})
    images = transformed[features.IMAGE]
    if augmentation is not None:
      images = augmentation_lib.augment(images, augmentation)
    return images, transformed[features.LABEL]

  dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
  options = tf.data.Options()
  # One input file per split: workers of a cluster take every n-th batch.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  # tf.data's autotuning thread holds the iterator's destructor for up to its (growing)
  # optimisation period at the end of every fit(); the fixed parallelism it falls back to (one
  # call per core, legacy prefetch) feeds training as fast (benchmarks/README.md, "Training", (e)).
  options.autotune.enabled = False
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _count_examples(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
                    tf_transform_output: tft.TFTransformOutput,
                    validation_percent: int) -> Tuple[int, int]:
  """(training, validation) drawings: one pass over the ids, no image decoding."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=1024, shuffle=False, num_epochs=1),
      tf_transform_output.raw_metadata.schema)
  total = held_out = 0
  for raw in dataset:
    ids = raw[features.ID_KEY]
    total += int(tf.size(ids))
    held_out += int(tf.reduce_sum(tf.cast(_in_validation(ids, validation_percent), tf.int32)))
  return total - held_out, held_out


@keras.saving.register_keras_serializable(package='quickdraw')
class SmoothedCrossEntropy(keras.losses.Loss):
  """Cross-entropy of integer labels against logits, with label smoothing, in float32
  (mixed-precision models produce float16 logits)."""

  def __init__(self, num_classes: int, label_smoothing: float = 0.0, name='cross_entropy',
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes, self.label_smoothing = num_classes, label_smoothing

  def call(self, y_true, y_pred):
    one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), self.num_classes)
    return keras.losses.categorical_crossentropy(
        one_hot, tf.cast(y_pred, tf.float32), from_logits=True,
        label_smoothing=self.label_smoothing)

  def get_config(self):
    return {**super().get_config(), 'num_classes': self.num_classes,
            'label_smoothing': self.label_smoothing}


def warm_start(model: keras.Model, base_model_dir: str, categories: List[str]) -> int:
  """Copies the base model's variables into `model` by name; returns how many were copied.

  The classifier (fc_2) is copied only when the base model knows the same categories in
  the same order; other variables must match in shape, else the warm start is refused.
  """
  base = tf.saved_model.load(base_model_dir)
  values = {variable.name: variable for variable in base.variables}
  with tf.io.gfile.GFile(os.path.join(base_model_dir, 'assets.extra', 'categories.txt')) as f:
    same_classes = [line.strip() for line in f if line.strip()] == categories
  copied = 0
  for variable in model.variables:
    if variable.name.startswith('fc_2/') and not same_classes:
      continue
    source = values.get(variable.name)
    if source is None or source.shape != variable.shape:
      raise ValueError(
          f'{base_model_dir}: base model has no variable {variable.name} of shape '
          f'{variable.shape}; it is not a model of this architecture. Set warm_start=False '
          'in the TrainingConfig or remove the mismatched model.')
    variable.assign(source)
    copied += 1
  logging.info('Warm start from %s: %d variables copied%s', base_model_dir, copied,
               '' if same_classes else ' (fc_2 skipped: the categories differ)')
  return copied


def resume_dir(fn_args: tfx.components.FnArgs) -> str:
  """Where this training's checkpoint lives: beside the Trainer's executions, named by
  everything that determines the run (settings and input artifacts), so a new execution on
  the same inputs finds the checkpoint of the one that was killed."""
  key = json.dumps({'config': fn_args.custom_config, 'train_files': fn_args.train_files,
                    'transform': fn_args.transform_output, 'base_model': fn_args.base_model},
                   sort_keys=True, default=str)
  # <pipeline_root>/Trainer.<model>/model_run/<execution id> -> <pipeline_root>/Trainer.<model>
  trainer_dir = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip('/')))
  return os.path.join(trainer_dir, 'resume', hashlib.sha256(key.encode()).hexdigest()[:16])


def train(fn_args: tfx.components.FnArgs,
          strategy: Optional[tf.distribute.Strategy] = None) -> keras.Model:
  """Fits (resuming from a checkpoint when one exists), re-estimates BatchNorm, writes
  history.json and the SavedModel; returns the model."""
  strategy = strategy or distribution.strategy_for_environment()
  config: Dict[str, Any] = fn_args.custom_config
  name = config['model_name']
  seed = int(config.get('seed', 0))
  keras.utils.set_random_seed(seed)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  categories = [c.decode('utf-8') for c in
                tf_transform_output.vocabulary_by_name(features.CATEGORY_VOCABULARY)]
  num_classes = len(categories)
  batch_size = int(config['batch_size'])
  epochs = int(config['epochs'])
  image_size = int(config['image_size'])
  budget_seconds = 60.0 * float(config.get('time_budget_minutes', 0.0))
  validation_percent = int(config.get('validation_percent', 0))
  augmentation = augmentation_lib.Augmentation(
      shift=float(config.get('augment_shift', 0.08)),
      scale=float(config.get('augment_scale', 0.1)),
      rotation_degrees=float(config.get('augment_rotation_degrees', 10.0)),
      stroke_jitter=float(config.get('augment_stroke_jitter', 0.0))
  ) if config.get('augment') else None

  num_train, num_validation = _count_examples(fn_args.train_files, fn_args.data_accessor,
                                              tf_transform_output, validation_percent)
  buffer = shuffle_buffer_size(int(config.get('shuffle_buffer', 0)), num_train + num_validation)

  def data(part, shuffle=True, data_seed=seed, augment=None, **stream):
    return _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size,
                    shuffle=shuffle, seed=data_seed, shuffle_buffer=buffer, part=part,
                    validation_percent=validation_percent, augmentation=augment, **stream)

  budget = budget_lib.training_budget(epochs, int(config.get('training_images', 0)),
                                      budget_seconds / 60, num_train, batch_size)
  steps_per_epoch = budget.steps_per_epoch
  validation_data = data('validation', shuffle=False) if num_validation else None

  def build(size: int) -> keras.Model:
    return architectures.build(name, num_classes, image_size=size,
                               batchnorm_momentum=float(config['batchnorm_momentum']))

  # Checkpoints for resuming: not across a multi-worker cluster, whose workers would have to
  # save in step with one another (a cluster restarts the whole job instead).
  single_worker = not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  policy, policy_reason = precision.choose(config.get('precision', 'auto'), build, image_size,
                                            batch_size, model_name=name)
  logging.info('%s: computing in %s (%s)', name, policy, policy_reason)
  with strategy.scope():
    # Variables stay float32; the loss, fc_2 and the signatures compute in float32.
    with precision.computing_in(policy):
      model = build(image_size)
      if strategy.num_replicas_in_sync > 1:
        model = batchnorm.synchronize_batchnorm(model)
    if fn_args.base_model and config.get('warm_start'):
      warm_start(model, fn_args.base_model, categories)
    # With a time budget the schedule's position is the share of the minutes spent (set by
    # Checkpointing), so the rate reaches its end when the budget does.
    clock = (tf.Variable(0.0, trainable=False, name='schedule_clock')
             if budget.seconds and single_worker else None)
    rate = schedules.learning_rate(
        config.get('lr_schedule', 'constant'), float(config['learning_rate']),
        total_steps=budget.total_steps,
        warmup_steps=round(float(config.get('warmup_fraction', 0.0)) * budget.total_steps),
        clock=clock)
    model.compile(
        optimizer=schedules.optimizer(config.get('optimizer', 'adam'), rate,
                                      float(config.get('weight_decay', 0.0))),
        loss=SmoothedCrossEntropy(num_classes, float(config.get('label_smoothing', 0.0))),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy')],
        jit_compile=bool(config.get('xla')))
  logging.info('Training %s: %d classes, %d training + %d validation drawings, %d steps '
               '(%.2f epochs)%s, batch %d, %s schedule peaking at %g, %s, %d replica(s)', name,
               num_classes, num_train, num_validation, budget.total_steps,
               budget.total_steps / steps_per_epoch,
               f' or {budget_seconds / 60:g} minutes' if budget_seconds else '', batch_size,
               config.get('lr_schedule', 'constant'), float(config['learning_rate']),
               'augmented' if augmentation else 'not augmented', strategy.num_replicas_in_sync)

  chief = distribution.is_chief(strategy)
  # Non-chief workers of a cluster write their (identical) copies to a scratch folder.
  scratch = None if chief else tempfile.mkdtemp(prefix='worker_')
  run_dir = fn_args.model_run_dir if chief else scratch
  throughput = training_callbacks.ThroughputLogger(name, budget.epochs, batch_size)
  callbacks = [training_callbacks.LearningRateLogger(), throughput,
               keras.callbacks.TensorBoard(log_dir=run_dir, update_freq='epoch',
                                                       profile_batch=0)]
  best = (training_callbacks.BestEpoch(int(config.get('early_stopping_patience', 0)))
          if validation_data else None)
  if best:
    callbacks.append(best)
  state = resume_lib.TrainingState(resume_dir(fn_args), model) if single_worker else None
  checkpointing = resume_lib.Checkpointing(
      state, float(config.get('checkpoint_seconds', CHECKPOINT_SECONDS)),
      budget_seconds, clock, budget.total_steps) if state else None
  fit_start = time.time()
  resumed_from = state.restore() if state else 0
  curve = training_callbacks.TrainingCurve(
      name, max(1, steps_per_epoch // CURVE_POINTS_PER_EPOCH), batch_size, resumed_from,
      state.curve if state else None)
  callbacks.append(curve)
  history = resume_lib.fit(
      model, lambda step: data('train', augment=augmentation, repeat=True, skip_batches=step),
      steps_per_epoch, budget.total_steps, callbacks, checkpointing, validation_data)
  fit_seconds = time.time() - fit_start
  if best:
    best.restore_best()

  post_fit_start = time.time()
  recalibration = int(config['batchnorm_recalibration_batches'])
  # Its own shuffle (seed + 1) of the training part, unaugmented. The inference-mode accuracy
  # that shows the BatchNorm trap is the Evaluator's train accuracy (not repeated here).
  used = (batchnorm.recalibrate_batchnorm(model, data('train', data_seed=seed + 1),
                                          recalibration) if recalibration else 0)
  steps = int(state.global_step.numpy()) if state else budget.total_steps
  images_seen = min(steps * batch_size, (steps // steps_per_epoch) * num_train +
                    min((steps % steps_per_epoch) * batch_size, num_train))
  summary = {
      'model_name': name, 'num_classes': num_classes, 'epochs': epochs,
      'batch_size': batch_size, 'history': history,
      'curve': resume_lib.as_columns(curve.points),
      'images_per_second': throughput.images_per_second,
      'training_examples': num_train, 'validation_examples': num_validation,
      'best_epoch': best.best_epoch + 1 if best else None,
      'stopped_epoch': best.stopped_epoch + 1 if best and best.stopped_epoch is not None
                       else None,
      'warm_started_from': fn_args.base_model if config.get('warm_start') else None,
      'replicas': strategy.num_replicas_in_sync,
      'precision': policy, 'precision_reason': policy_reason,
      'machine': precision.describe_machine(),
      'time_budget_minutes': budget_seconds / 60,
      'stopped_by_time_budget': bool(checkpointing and checkpointing.stopped_by_budget),
      'steps': steps, 'images_seen': images_seen,
      'epochs_reached': round(images_seen / max(num_train, 1), 3),
      'resumed_from_step': resumed_from,
      'checkpoints_written': checkpointing.saves if checkpointing else 0,
      # Over every attempt; fit_seconds is this attempt's fit() only.
      'training_seconds': round(float(state.training_seconds.numpy()), 1) if state
                          else round(fit_seconds, 1),
      'fit_seconds': round(fit_seconds, 1),
      'batchnorm_recalibration_batches': used,
      'budget': budget.to_dict(),
      'optimizer': config.get('optimizer', 'adam'),
      'lr_schedule': config.get('lr_schedule', 'constant'),
      'peak_learning_rate': float(config['learning_rate']),
      'warmup_fraction': float(config.get('warmup_fraction', 0.0)),
      'label_smoothing': float(config.get('label_smoothing', 0.0)),
      # Where the schedule ended: near zero when a decaying schedule met its budget.
      'last_learning_rate': schedules.current_rate(model.optimizer),
  }
  serving_dir = fn_args.serving_model_dir if chief else os.path.join(scratch, 'model')
  tf.io.gfile.makedirs(run_dir)

  # Without the optimizer's slots (twice the weights): clients and warm starts need neither.
  model.save(serving_dir, save_format='tf', include_optimizer=False,
             signatures=signatures.export_signatures(model, tf_transform_output))
  # TF Serving's place for extra files: the class names in label-id order, for consumers.
  extra = os.path.join(serving_dir, 'assets.extra')
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, 'categories.txt'), 'w') as f:
    for category in categories:
      f.write(category + '\n')
  summary['post_fit_seconds'] = round(time.time() - post_fit_start, 1)
  # How the model was trained, travelling with it (the model card reads it).
  with tf.io.gfile.GFile(os.path.join(extra, TRAINING_RUN_FILE), 'w') as f:
    json.dump({key: summary[key] for key in TRAINING_RUN_KEYS}, f, indent=2, default=float)
  with tf.io.gfile.GFile(os.path.join(run_dir, HISTORY_FILE), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  logging.info('%s: trained %d steps (%.2f epochs) in %.0f s, %s; after fit: %.0f s '
               '(BatchNorm re-estimation on %d batches, export)', name, steps,
               summary['epochs_reached'], summary['training_seconds'], policy,
               summary['post_fit_seconds'], used)
  if state and chief:
    state.remove()  # The model is exported: nothing left to resume.
  if scratch:
    shutil.rmtree(scratch, ignore_errors=True)
  return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  # The strategy first: MultiWorkerMirroredStrategy must exist before other TensorFlow work.
  strategy = distribution.strategy_for_environment()
  train(fn_args, strategy)
