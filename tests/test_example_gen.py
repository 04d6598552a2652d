"""QuickDrawExampleGen's executor on a synthetic source: determinism, splits, counts, images."""
import collections
import io
import json
import os

import apache_beam as beam
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils
from google.protobuf import message

from components import artifact_types
from components.example_gen import category_sampling
from components.example_gen import component as example_gen_component
from components.example_gen import executor as example_gen_executor
from components.example_gen import outputs as example_gen_outputs
from tests.conftest import make_synthetic_source

CATEGORIES = ('line', 'box', 'zig zag', 'The Eiffel Tower')
TRAIN, TEST = 30, 12


def _run(source, out_dir, seed=5, beam_args=None, **overrides):
  """Runs the executor as TFX would, with the exec properties the component declares."""
  args = dict(source=source, num_categories=3, train_per_category=TRAIN,
              test_per_category=TEST, seed=seed, render_size=64)
  component = example_gen_component.QuickDrawExampleGen(**dict(args, **overrides))
  exec_properties = {
      key: proto_utils.proto_to_json(value) if isinstance(value, message.Message) else value
      for key, value in component.exec_properties.items()}
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(str(out_dir), 'examples')
  context = None
  if beam_args:
    context = base_beam_executor.BaseBeamExecutor.Context(
        make_beam_pipeline_fn=lambda: beam.Pipeline(argv=beam_args))
  example_gen_executor.Executor(context).Do({}, {'examples': [examples], 'manifest': [
      _manifest_of(examples)]}, exec_properties)
  return examples


_MANIFESTS = {}


def _manifest_of(examples):
  """The manifest artifact written beside `examples` by `_run` (one object per run)."""
  if examples.uri not in _MANIFESTS:
    manifest = artifact_types.SamplingManifest()
    manifest.uri = os.path.join(os.path.dirname(examples.uri), 'manifest')
    _MANIFESTS[examples.uri] = manifest
  return _MANIFESTS[examples.uri]


def _records(examples, split):
  files = tf.io.gfile.glob(os.path.join(examples.uri, f'Split-{split}', '*'))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _read(examples, split):
  return [tf.train.Example.FromString(r) for r in _records(examples, split)]


def _value(example, key):
  return example.features.feature[key].bytes_list.value[0]


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  # 50 distinct drawings + 10 exact duplicates per category: 42 needed, so duplicates matter.
  return make_synthetic_source(str(tmp_path_factory.mktemp('src')), categories=CATEGORIES,
                               per_category=50, duplicates=10)


@pytest.fixture(scope='module')
def first_run(source, tmp_path_factory):
  return _run(source, tmp_path_factory.mktemp('run1'))


def test_counts_per_category_and_split(first_run):
  assert json.loads(first_run.split_names) == ['train', 'test']
  for split, expected in (('train', TRAIN), ('test', TEST)):
    counts = collections.Counter(_value(e, 'category').decode() for e in _read(first_run, split))
    assert len(counts) == 3 and set(counts) <= set(CATEGORIES)
    assert set(counts.values()) == {expected}


def test_same_seed_and_source_give_identical_examples(source, first_run, tmp_path):
  second = _run(source, tmp_path / 'run2')
  for split in ('train', 'test'):
    assert sorted(_records(first_run, split)) == sorted(_records(second, split))
  other = _run(source, tmp_path / 'run3', seed=6)
  assert (sorted(_value(e, 'drawing_id') for e in _read(other, 'test')) !=
          sorted(_value(e, 'drawing_id') for e in _read(first_run, 'test')))


def test_two_worker_processes_write_the_same_examples(source, first_run, tmp_path):
  parallel = _run(source, tmp_path, beam_args=['--direct_running_mode=multi_processing',
                                               '--direct_num_workers=2'])
  for split in ('train', 'test'):
    assert sorted(_records(parallel, split)) == sorted(_records(first_run, split))
  assert (example_gen_outputs.read_manifest(parallel) ==
          example_gen_outputs.read_manifest(first_run))


def test_splits_are_disjoint_after_deduplication(first_run):
  train, test = _read(first_run, 'train'), _read(first_run, 'test')
  train_images = [_value(e, 'image_png') for e in train]
  test_images = [_value(e, 'image_png') for e in test]
  # Exact duplicate drawings render to identical PNGs, so equal images mean leakage.
  assert len(set(train_images)) == len(train_images)
  assert len(set(test_images)) == len(test_images)
  assert not set(train_images) & set(test_images)
  assert not {_value(e, 'drawing_id') for e in train} & {_value(e, 'drawing_id') for e in test}


def test_images_decode_to_the_render_size(first_run):
  for example in _read(first_run, 'test'):
    image = np.array(Image.open(io.BytesIO(_value(example, 'image_png'))))
    assert image.shape == (64, 64) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255  # Ink on paper.


def test_manifest_counts_reads_duplicates_and_takes(first_run):
  manifest = example_gen_outputs.read_manifest(_manifest_of(first_run))
  assert manifest == example_gen_outputs.read_manifest(first_run)  # The copy in Examples.
  assert manifest['seed'] == 5 and manifest['train_per_category'] == TRAIN
  assert manifest['format'] == category_sampling.SIMPLIFIED
  assert manifest['category_choice'] == 'random (seeded)'
  assert manifest['chosen_categories'] == [r['category'] for r in manifest['categories']]
  assert len(manifest['categories']) == 3
  for row in manifest['categories']:
    assert (row['read'], row['duplicates_removed'], row['train'], row['test']) == (60, 10, TRAIN,
                                                                                   TEST)
    assert row['skipped'] == {} and row['fields'] == ['drawing', 'word']
  assert manifest['totals'] == {'read': 180, 'skipped_total': 0, 'not_recognized_filtered': 0,
                                'duplicates_removed': 30, 'train': 3 * TRAIN, 'test': 3 * TEST}
  assert _manifest_of(first_run).get_int_custom_property('duplicates_removed') == 30


def test_explicit_category_missing_at_source_fails_with_its_name(source, tmp_path):
  with pytest.raises(Exception, match="category 'unicorn' has no file"):
    _run(source, tmp_path, num_categories=1, categories=['unicorn'])


@pytest.fixture(scope='module')
def mixed_source(tmp_path_factory):
  """One category per format: numpy_bitmap, raw ndjson, simplified ndjson with a bad line."""
  folder = str(tmp_path_factory.mktemp('mixed'))
  rng = np.random.default_rng(0)
  np.save(os.path.join(folder, 'The Eiffel Tower.npy'),
          rng.integers(0, 256, size=(30, 784), dtype=np.uint8))
  with open(os.path.join(folder, 'raw circle.ndjson'), 'w') as f:
    for i in range(30):
      angles = np.linspace(0, 1 + i / 10, 50)
      xs, ys = (1000 * np.cos(angles)).tolist(), (400 * np.sin(angles)).tolist()
      f.write(json.dumps({'word': 'raw circle', 'drawing': [[xs, ys, list(range(50))]]}) + '\n')
  make_synthetic_source(folder, categories=('line',), per_category=200, duplicates=0)
  with open(os.path.join(folder, 'line.ndjson'), 'a') as f:
    f.write('{"word": "line", "drawing": []}\n')
  return folder


def test_formats_and_skips_of_each_file_reach_the_manifest(mixed_source, tmp_path):
  examples = _run(mixed_source, tmp_path, num_categories=3, train_per_category=10,
                  test_per_category=5, categories=['The Eiffel Tower', 'raw circle', 'line'])
  manifest = example_gen_outputs.read_manifest(_manifest_of(examples))
  assert manifest['format'] == 'mixed' and manifest['category_choice'] == 'explicit'
  rows = {r['category']: r for r in manifest['categories']}
  assert rows['The Eiffel Tower']['format'] == category_sampling.BITMAP
  assert rows['raw circle']['format'] == category_sampling.RAW
  assert rows['line']['format'] == category_sampling.SIMPLIFIED
  assert rows['line']['skipped'] == {'empty_drawing': 1} and rows['line']['read'] == 201
  assert rows['line']['first_skipped']['empty_drawing'].endswith(
      'line.ndjson:201: "drawing" is empty or not a list of strokes.')
  assert manifest['totals']['skipped_total'] == 1
  for split, expected in (('train', 10), ('test', 5)):
    counts = collections.Counter(_value(e, 'category').decode() for e in _read(examples, split))
    assert counts == {'The Eiffel Tower': expected, 'raw circle': expected, 'line': expected}
  for example in _read(examples, 'test'):
    image = np.array(Image.open(io.BytesIO(_value(example, 'image_png'))))
    assert image.shape == (64, 64)


def test_max_skip_ratio_of_the_component_fails_the_run(mixed_source, tmp_path):
  with pytest.raises(Exception, match=r'line.ndjson: 1 of 201 lines skipped, more than '
                                      r'max_skip_ratio 0 allows'):
    _run(mixed_source, tmp_path, num_categories=1, train_per_category=10, test_per_category=5,
         categories=['line'], max_skip_ratio=0.0)
