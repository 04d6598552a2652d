"""Does augmentation (or a schedule / label smoothing) help at the default profile's data scale?

Plain Keras on the default profile's data: its 10 categories, 120 training and 30 test
drawings each (seed 42, read with components/example_gen/category_sampling.py as ExampleGen
does), skNet, 3 epochs, batch 32, Adam 3e-4; the same seed, data and order for every variant.
Reports inference-mode test accuracy (after the Trainer's BatchNorm re-estimation) and
leave-one-out mAP on fc_1. `--image-size` below 128 trades fidelity for time on a busy CPU.

  python benchmarks/training_quality.py --image-size 32 --output result.json
"""
import argparse
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
from benchmarks import training_recipes
from benchmarks.training import emit
from domain import retrieval
from models import architectures
from models import augmentation as augmentation_lib
from models import batchnorm
from models import schedules
from models import trainer
from pipeline import config as config_lib

# The categories the default profile drew with seed 42 (README, "Results of the default profile").
DEFAULT_CATEGORIES = ('arm', 'broccoli', 'cake', 'campfire', 'circle', 'fireplace', 'frog',
                      'hedgehog', 'stairs', 'watermelon')
VARIANTS = {
    'baseline': {},
    'augment': {'augment': True},
    'augment_stroke_jitter': {'augment': True, 'stroke_jitter': 0.3},
    'cosine_warmup_label_smoothing': {'schedule': 'cosine', 'warmup_epochs': 0.5,
                                      'label_smoothing': 0.1},
}


def run_variant(name, options, images, labels, args):
  keras.utils.set_random_seed(args.seed)
  train = tf.data.Dataset.from_tensor_slices((images['train'], labels['train'])).shuffle(
      len(labels['train']), seed=args.seed).batch(args.batch_size)
  if options.get('augment'):
    augmentation = augmentation_lib.Augmentation(
        stroke_jitter=options.get('stroke_jitter', 0.0))
    train = train.map(lambda x, y: (augmentation_lib.augment(x, augmentation), y),
                      num_parallel_calls=tf.data.AUTOTUNE)
  train = train.prefetch(tf.data.AUTOTUNE)
  steps = -(-len(labels['train']) // args.batch_size)
  model = architectures.build('sknet', len(DEFAULT_CATEGORIES), image_size=args.image_size)
  rate = schedules.learning_rate(options.get('schedule', 'constant'), 3e-4, steps * args.epochs,
                                 int(options.get('warmup_epochs', 0) * steps))
  model.compile(schedules.optimizer('adam', rate),
                trainer.SmoothedCrossEntropy(len(DEFAULT_CATEGORIES),
                                             options.get('label_smoothing', 0.0)),
                [keras.metrics.SparseCategoricalAccuracy(name='accuracy')])
  start = time.time()
  history = model.fit(train, epochs=args.epochs, verbose=0)
  unaugmented = tf.data.Dataset.from_tensor_slices((images['train'], labels['train'])).shuffle(
      len(labels['train']), seed=args.seed + 1).batch(args.batch_size)
  batchnorm.recalibrate_batchnorm(model, unaugmented, 20)
  embedder = keras.Model(model.input, [model.get_layer('fc_1').output, model.output])
  embedding, logits = embedder.predict(images['test'], batch_size=64, verbose=0)
  _, train_logits = embedder.predict(images['train'], batch_size=64, verbose=0)
  result = {
      'train_accuracy': float(np.mean(train_logits.argmax(1) == labels['train'])),
      'test_accuracy': float(np.mean(logits.argmax(1) == labels['test'])),
      'map': retrieval.mean_average_precision(embedding, labels['test'])['map'],
      'last_epoch_training_accuracy': float(history.history['accuracy'][-1]),
      'seconds': time.time() - start,
  }
  print(f'{name}: ' + ', '.join(f'{k} {v:.3f}' for k, v in result.items()), flush=True)
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--source', default=config_lib.default_source())
  parser.add_argument('--image-size', type=int, default=128)
  parser.add_argument('--train', type=int, default=120)
  parser.add_argument('--test', type=int, default=30)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--seed', type=int, default=42)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--output')
  args = parser.parse_args(argv)
  images, labels = training_recipes.load(args.source, DEFAULT_CATEGORIES, args.train, args.test,
                                         args.image_size, args.seed)
  result = {'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'config': dict(vars(args), source=result_paths.shown_source(args.source))}
  for name in args.variants.split(','):
    result[name] = run_variant(name, VARIANTS[name], images, labels, args)
  emit(result, args.output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
