"""The ExampleGen's outputs read back: the sampling manifest and the examples of a split.
Light: the Pusher, the report and the run summary read these without loading Beam."""
import json
import os
from typing import Any, Dict

import tensorflow as tf

from models import features

SPLITS = ('train', 'test')
MANIFEST_FILE = 'manifest.json'
MANIFEST_KEY = 'manifest'


def read_manifest(artifact: Any) -> Dict[str, Any]:
  """The manifest of a run: give the `manifest` artifact, the `examples` artifact (which holds
  a copy), an ML Metadata artifact proto of either, or a folder URI."""
  uri = artifact if isinstance(artifact, str) else artifact.uri
  path = os.path.join(uri, MANIFEST_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: no sampling manifest; is {uri} the manifest or examples '
                            'output of QuickDrawExampleGen?')
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def read_split(examples: Any, split: str) -> Dict[str, list]:
  """Every example of one split of an examples artifact (or an ML Metadata artifact proto, or
  its URI): {'id', 'category', 'png', 'serialized'} as parallel lists, in file order."""
  uri = examples if isinstance(examples, str) else examples.uri
  pattern = os.path.join(uri, f'Split-{split}', '*')  # TFX's split layout (artifact_utils).
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f'{pattern}: no examples for split {split!r}')
  spec = {key: tf.io.FixedLenFeature([], tf.string) for key in
          (features.IMAGE_KEY, features.CATEGORY_KEY, features.ID_KEY)}
  parts = {'id': [], 'category': [], 'png': [], 'serialized': []}
  for serialized in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(256):
    parsed = tf.io.parse_example(serialized, spec)
    parts['serialized'] += list(serialized.numpy())
    parts['png'] += list(parsed[features.IMAGE_KEY].numpy())
    parts['id'] += [v.decode('utf-8') for v in parsed[features.ID_KEY].numpy()]
    parts['category'] += [v.decode('utf-8') for v in parsed[features.CATEGORY_KEY].numpy()]
  return parts
