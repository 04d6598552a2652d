"""Which recipe spends a fixed budget of training images best? (benchmarks/README.md,
"Training recipes under a budget").

Every variant trains the project's model (models/architectures.py) on the same drawings in the
same order for the same number of training images, with the Trainer's own schedules
(models/schedules.py, laid over that budget) and loss; then, as the Trainer does, re-estimates
BatchNorm over training batches and is scored in inference mode on every test drawing: top-1
accuracy and the leave-one-out mAP of fc_1 (L2). Along the way it scores a fixed subset of the
test drawings at a few points, for the curve of accuracy against images seen.

The data are the specification's sample (its 100 categories, seed 42, drawn and deduplicated by
components/example_gen/category_sampling.py as ExampleGen does, rendered as the pipeline renders
them) or a proxy of it: a random subset of those categories, fewer drawings, a smaller image side.

  python benchmarks/training_recipes.py --categories 20 --train 1000 --test 100 \
      --image-size 64 --images 6000 --model sknet --variants constant_3e-4,linear_1e-3 \
      --seeds 1 --output result.json
"""
import argparse
import gc
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import legacy_keras  # pylint: disable=g-import-not-at-top
legacy_keras.enable()  # Before TensorFlow is imported.

# pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf
import tf_keras as keras

from benchmarks import result_paths
from benchmarks.training import emit
from components.example_gen import category_sampling
from domain import drawing_rendering
from domain import quickdraw_source
from domain import retrieval
from models import architectures
from models import batchnorm
from models import precision
from models import preprocessing
from models import schedules
from models import trainer
from pipeline import config as config_lib

# name: (schedule, peak rate, warm-up share of the budget, batch size, label smoothing).
VARIANTS = {
    'constant_3e-4': ('constant', 3e-4, 0.0, 32, 0.0),  # The recipe before this study.
    'linear_3e-4': ('linear', 3e-4, 0.05, 32, 0.0),
    'linear_1e-3': ('linear', 1e-3, 0.05, 32, 0.0),
    'cosine_1e-3': ('cosine', 1e-3, 0.05, 32, 0.0),
    'linear_3e-3': ('linear', 3e-3, 0.05, 32, 0.0),
    'linear_2e-3_batch64': ('linear', 2e-3, 0.05, 64, 0.0),  # Rate scaled with the batch.
    'linear_1e-3_smoothing': ('linear', 1e-3, 0.05, 32, 0.1),
    # A quarter of the budget warming up: Adam's first steps move every weight by about the
    # rate, which fc_1's 16,384 inputs at 128x128 add up to a large jump.
    'linear_3e-4_warmup25': ('linear', 3e-4, 0.25, 32, 0.0),
    'linear_1e-3_warmup25': ('linear', 1e-3, 0.25, 32, 0.0),
    'cosine_3e-4_warmup25': ('cosine', 3e-4, 0.25, 32, 0.0),
    'linear_6e-4_batch64_warmup25': ('linear', 6e-4, 0.25, 64, 0.0),  # The full profile's.
    'linear_3e-4_smoothing_warmup25': ('linear', 3e-4, 0.25, 32, 0.1),
}
MODEL_NAMES = ('sknet', 'skresnet')
CURVE_POINTS = 4  # Scores along the way, besides the end.
CURVE_TEST_DRAWINGS = 500
RECALIBRATION_BATCHES = 20


def spec_categories(source: str, count: int, seed: int):
  """`count` of the specification's 100 categories (seed 42, as the spec profile draws them)."""
  spec = config_lib.PROFILES['spec']
  chosen = quickdraw_source.choose_categories(quickdraw_source.list_categories(source),
                                              spec.num_categories, spec.seed)
  return chosen if count >= len(chosen) else quickdraw_source.choose_categories(chosen, count,
                                                                                seed)


def load(source, categories, train_count, test_count, image_size, seed):
  images, labels = {'train': [], 'test': []}, {'train': [], 'test': []}
  for label, category in enumerate(categories):
    sample = category_sampling.sample_category(source, category, train_count, test_count, seed)
    for split, drawings in (('train', sample.train), ('test', sample.test)):
      pngs = tf.constant([drawing_rendering.render_png(d) for _, d in drawings])
      images[split].append(preprocessing.decode_and_resize(pngs, image_size).numpy())
      labels[split] += [label] * len(drawings)
    print(f'read {label + 1}/{len(categories)} categories', end='\r', file=sys.stderr)
  return ({s: np.concatenate(images[s]) for s in images},
          {s: np.array(labels[s], np.int64) for s in labels})


def embedder_of(model):
  return keras.Model(model.input, [model.get_layer('fc_1').output, model.output])


def score(embedder, images, labels, with_map=False):
  embedding, logits = embedder.predict(images, batch_size=128, verbose=0)
  result = {'test_accuracy': float(np.mean(logits.argmax(1) == labels))}
  if with_map:
    result['map'] = retrieval.mean_average_precision(embedding, labels)['map']
  return result


class Curve(keras.callbacks.Callback):
  """At each (Keras) epoch end: BatchNorm re-estimated, a fixed test subset scored."""

  def __init__(self, recalibration_data, images, labels, batch_size):
    super().__init__()
    self.recalibration_data, self.images, self.labels = recalibration_data, images, labels
    self.batch_size, self.points, self._steps = batch_size, [], 0
    self._embedder = None  # Built once: a new one per point would be traced again.

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1

  def on_epoch_end(self, epoch, logs=None):
    # Moving statistics only: the weights and the training-mode forward pass are untouched.
    batchnorm.recalibrate_batchnorm(self.model, self.recalibration_data, RECALIBRATION_BATCHES)
    self._embedder = self._embedder or embedder_of(self.model)
    accuracy = score(self._embedder, self.images, self.labels)['test_accuracy']
    self.points.append({'images': self._steps * self.batch_size, 'test_accuracy': accuracy,
                        'learning_rate': schedules.current_rate(self.model.optimizer),
                        'training_accuracy': float(logs.get('accuracy', 0.0))})
    print(f'  {self.points[-1]}', flush=True)


def run_variant(name, model_name, images, labels, budget_images, seed, image_size,
                policy='float32'):
  schedule, peak, warmup, batch_size, smoothing = VARIANTS[name]
  # The variant before holds a shuffled copy of every training image in its dataset (6.5 GB at
  # the specification's scale) until its cycles are collected: the second variant of a study
  # at that scale was killed out of memory on a 24 GB machine.
  keras.backend.clear_session()
  gc.collect()
  keras.utils.set_random_seed(seed)
  num_classes = int(labels['train'].max()) + 1
  points = CURVE_POINTS + 1
  steps = max(budget_images // batch_size // points, 1) * points
  # The data order depends on the seed only, not on the variant (batches of 64 take the same
  # drawings as two batches of 32).
  order = np.random.default_rng(seed).permutation(len(labels['train']))
  repeats = -(-steps * batch_size // len(order))
  order = np.concatenate([np.random.default_rng(seed + r).permutation(len(order)) if r else order
                          for r in range(repeats)])[:steps * batch_size]
  train = tf.data.Dataset.from_tensor_slices(
      (images['train'][order], labels['train'][order])).batch(batch_size).prefetch(2)
  recalibration = tf.data.Dataset.from_tensor_slices(
      (images['train'], labels['train'])).shuffle(len(order), seed=seed + 1).batch(32)
  curve_rows = np.random.default_rng(0).permutation(len(labels['test']))[:CURVE_TEST_DRAWINGS]
  curve = Curve(recalibration, images['test'][curve_rows], labels['test'][curve_rows],
                batch_size)
  with precision.computing_in(policy):  # As the Trainer builds it.
    model = architectures.build(model_name, num_classes, image_size=image_size)
  rate = schedules.learning_rate(schedule, peak, steps, round(warmup * steps))
  model.compile(schedules.optimizer('adam', rate),
                trainer.SmoothedCrossEntropy(num_classes, smoothing),
                [keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
  start = time.time()
  model.fit(train, steps_per_epoch=steps // points, epochs=points, verbose=0, callbacks=[curve])
  seconds = time.time() - start
  used = batchnorm.recalibrate_batchnorm(model, recalibration, RECALIBRATION_BATCHES)
  result = {'model': model_name, 'variant': name, 'seed': seed, 'schedule': schedule,
            'peak_learning_rate': peak, 'warmup_fraction': warmup, 'batch_size': batch_size,
            'label_smoothing': smoothing, 'precision': policy,
            'images_seen': steps * batch_size,
            **score(embedder_of(model), images['test'], labels['test'], with_map=True),
            'last_learning_rate': schedules.current_rate(model.optimizer),
            'training_seconds': round(seconds, 1),
            'images_per_second': round(steps * batch_size / seconds, 2),
            'batchnorm_recalibration_batches': used, 'curve': curve.points}
  print(f'{model_name} {name} seed {seed}: test accuracy {result["test_accuracy"]:.4f}, '
        f'mAP {result["map"]:.4f}, {seconds:.0f} s', flush=True)
  return result


def plot(result: dict, path: str) -> None:
  """Test accuracy (the curve's subset of test drawings) against training images seen, one
  line per model, variant and seed; the end point is the score on every test drawing."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  figure, axes = pyplot.subplots(figsize=(7, 4.5))
  for run in result['runs']:
    points = [(0, 0.0)] + [(p['images'], p['test_accuracy']) for p in run['curve']]
    axes.plot(*zip(*points), marker='o', markersize=3,
              label=f'{architectures.title(run["model"])} {run["variant"]} (seed {run["seed"]}): '
                    f'{100 * run["test_accuracy"]:.1f}%')
  config = result['config']
  axes.set(xlabel='training images seen', ylabel='test top-1 accuracy',
           title=f'{config["categories"]} categories x {config["train"]} drawings, '
                 f'{config["image_size"]}x{config["image_size"]}, '
                 f'{result["machine"].get("cpu_model", "")}'[:90])
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=110)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--plot', help='write the curves of --output (or of --plot-from) here')
  parser.add_argument('--plot-from', help='a result JSON to plot without training')
  parser.add_argument('--source', default=config_lib.default_source())
  parser.add_argument('--categories', type=int, default=100,
                      help='how many of the specification\'s 100 categories')
  parser.add_argument('--train', type=int, default=1000)
  parser.add_argument('--test', type=int, default=50)
  parser.add_argument('--image-size', type=int, default=128)
  parser.add_argument('--images', type=int,
                      help='the training images every variant gets (required to train)')
  parser.add_argument('--model', action='append', choices=MODEL_NAMES)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--seeds', default='1', help='comma-separated')
  parser.add_argument('--precision', default='float32', choices=precision.SETTINGS,
                      help='as the Trainer\'s setting: auto takes mixed bfloat16 where the CPU '
                           'has it and it trains faster (default float32, as the studies before)')
  parser.add_argument('--output')
  args = parser.parse_args(argv)
  if args.plot_from:
    with open(args.plot_from, encoding='utf-8') as f:
      plot(json.load(f), args.plot or os.path.splitext(args.plot_from)[0] + '.png')
    return 0
  if not args.images:
    parser.error('--images is required to train (or give --plot-from)')
  unknown = set(args.variants.split(',')) - set(VARIANTS)
  if unknown:
    parser.error(f'unknown variants {sorted(unknown)}; choose from {", ".join(VARIANTS)}')
  seed = config_lib.PROFILES['spec'].seed
  categories = spec_categories(args.source, args.categories, seed)
  start = time.time()
  images, labels = load(args.source, categories, args.train, args.test, args.image_size, seed)
  result = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'machine': precision.describe_machine(),
            'config': dict(vars(args), source=result_paths.shown_source(args.source),
                           output=args.output and os.path.basename(args.output),
                           plot=args.plot and os.path.basename(args.plot)),
            'categories': categories, 'data_seconds': round(time.time() - start, 1),
            'runs': []}
  policies = {}
  for model_name in args.model or ['sknet']:
    policies[model_name], why = precision.choose(
        args.precision, lambda size, m=model_name: architectures.build(m, len(categories),
                                                                       image_size=size),
        args.image_size, 32, model_name=model_name)
    print(f'{model_name}: computing in {policies[model_name]} ({why})', flush=True)
  result['precision'] = policies
  # Interleaved by seed, then variant, then model: a machine that slows down mid-study
  # slows every variant alike.
  for variant_seed in (int(s) for s in args.seeds.split(',')):
    for name in args.variants.split(','):
      for model_name in args.model or ['sknet']:
        result['runs'].append(run_variant(name, model_name, images, labels, args.images,
                                          variant_seed, args.image_size, policies[model_name]))
        if args.output:  # Partial results survive a killed study.
          emit(result, args.output, quiet=True)
  emit(result, args.output)
  if args.plot:
    plot(result, args.plot)
  return 0


if __name__ == '__main__':
  sys.exit(main())
