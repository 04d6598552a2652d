"""The scale point's inputs for benchmarks/evaluation.py: 100 categories of Quick, Draw!
drawings rendered into ExampleGen's format, and a synthetic model with the Trainer's export
contract, each written once under a work directory and reused."""
import collections
import json
import os

import numpy as np
import tensorflow as tf

from common import progress
from components.evaluator import executor as evaluator_executor
from components.example_gen import category_sampling
from domain import drawing_rendering
from domain import quickdraw_source
from models import features
from models import preprocessing
from pipeline import config as config_lib

SCALE_CATEGORIES, SCALE_TRAIN, SCALE_TEST, SCALE_SHARDS = 100, 200, 50, 2


def write_scale_examples(source: str, work_dir: str) -> str:
  """Sampled, rendered and written once under `work_dir`; reused when already there. The
  categories: the default profile's 10 (those its models know) and 90 others (seed 0)."""
  uri = os.path.join(work_dir, 'examples')
  marker = os.path.join(uri, 'categories.json')
  if os.path.exists(marker):
    return uri
  available = quickdraw_source.list_categories(source)
  default = config_lib.profile('default', source=source)
  own = quickdraw_source.choose_categories(available, default.num_categories, default.seed)
  others = [c for c in available if c not in own]
  categories = own + quickdraw_source.choose_categories(others, SCALE_CATEGORIES - len(own), 0)
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  writers = {}
  for split in ('train', 'test'):
    os.makedirs(os.path.join(uri, f'Split-{split}'), exist_ok=True)
    writers[split] = [tf.io.TFRecordWriter(os.path.join(
        uri, f'Split-{split}', f'data_tfrecord-{i:05d}-of-{SCALE_SHARDS:05d}.gz'), options)
        for i in range(SCALE_SHARDS)]
  written = collections.Counter()
  with progress.Progress(len(categories), 'scale data: sampling and rendering', 'categories',
                         log_every=15.0) as shown:
    for category in categories:
      sample = category_sampling.sample_category(source, category, SCALE_TRAIN, SCALE_TEST, 0)
      for split, items in (('train', sample.train), ('test', sample.test)):
        for drawing_id, item in items:
          png = drawing_rendering.render_item(item, default.render_size, default.stroke_width)
          example = drawing_rendering.to_example(drawing_id, category, png)
          writers[split][written[split] % SCALE_SHARDS].write(
              example.SerializeToString(deterministic=True))
          written[split] += 1
      shown.update()
  for split_writers in writers.values():
    for writer in split_writers:
      writer.close()
  with open(marker, 'w') as f:
    json.dump({'categories': categories, 'written': dict(written)}, f, indent=2)
  return uri


class SyntheticModel(tf.Module):
  """The Trainer's export contract at a small, fixed cost: the PNG decoded and resized as the
  transform does, average-pooled to 32 x 32, a fixed random projection to a 1024-d ReLU
  `embedding`, a fixed random linear classifier; `transform_features` gives the label id."""

  def __init__(self, categories, image_size: int, seed: int = 0):
    super().__init__()
    rng = np.random.default_rng(seed)
    self.image_size = image_size
    self.projection = tf.constant(rng.normal(size=(1024, 1024)).astype(np.float32) / 32.0)
    self.classifier = tf.constant(rng.normal(size=(1024, len(categories))).astype(np.float32))
    self.categories = tf.constant(categories)
    self.label_ids = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        self.categories, tf.range(len(categories), dtype=tf.int64)), default_value=-1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(self, examples):
    spec = {features.CATEGORY_KEY: tf.io.FixedLenFeature([], tf.string)}
    return {features.LABEL: self.label_ids.lookup(
        tf.io.parse_example(examples, spec)[features.CATEGORY_KEY])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def embed(self, examples):
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    images = preprocessing.decode_and_resize(
        tf.io.parse_example(examples, spec)[features.IMAGE_KEY], self.image_size)
    pooled = tf.nn.avg_pool2d(images, self.image_size // 32, self.image_size // 32, 'VALID')
    embedding = tf.nn.relu(tf.matmul(tf.reshape(pooled, [-1, 1024]), self.projection))
    probabilities = tf.nn.softmax(tf.matmul(embedding, self.classifier))
    return {'embedding': embedding, 'probabilities': probabilities,
            'category': tf.gather(self.categories, tf.argmax(probabilities, axis=-1))}


def write_synthetic_model(examples_uri: str, work_dir: str, image_size: int) -> str:
  """The model artifact (Format-Serving inside) for the scale point's categories."""
  uri = os.path.join(work_dir, 'synthetic_model')
  serving = os.path.join(uri, 'Format-Serving')
  if not os.path.exists(os.path.join(serving, evaluator_executor.CATEGORIES_FILE)):
    with open(os.path.join(examples_uri, 'categories.json')) as f:
      categories = json.load(f)['categories']
    module = SyntheticModel(categories, image_size)
    tf.saved_model.save(module, serving, signatures={
        'embed': module.embed, 'transform_features': module.transform_features})
    os.makedirs(os.path.dirname(os.path.join(serving, evaluator_executor.CATEGORIES_FILE)))
    with open(os.path.join(serving, evaluator_executor.CATEGORIES_FILE), 'w') as f:
      f.write('\n'.join(categories) + '\n')
  return uri
