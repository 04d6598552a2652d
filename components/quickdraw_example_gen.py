"""QuickDrawExampleGen: samples Quick, Draw! categories and emits rendered tf.Examples.

Built on TFX's file-based ExampleGen extension point: `FileBasedExampleGen` with a custom
executor (`BaseExampleGenExecutor.GenerateExamplesByBeam` overridden, because sampling
decides the train/test split itself rather than hashing records into buckets) and a driver
that also accepts an https:// source, which cannot be globbed. Besides `examples` it outputs
`manifest`, a `quickdraw.SamplingManifest` artifact: what was read, skipped, deduplicated
and taken per category (`read_manifest`).
"""
import json
import os
from typing import Any, Dict, List, Sequence

from absl import logging
import apache_beam as beam
from google.protobuf import any_pb2
from google.protobuf import json_format
from google.protobuf import struct_pb2
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact as artifact_lib
from tfx.types import artifact_utils
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import category_sampling
from components import drawing_rendering
from components import quickdraw_source
from models import features
from models import progress

SPLITS = ('train', 'test')
MANIFEST_FILE = 'manifest.json'
MANIFEST_KEY = 'manifest'
# Every file at the source: the driver fingerprints them, so a changed source invalidates
# the cache (a glob cannot say "*.ndjson* or *.npy").
_SOURCE_PATTERN = '*'


class SamplingManifest(artifact_lib.Artifact):
  """manifest.json: source, formats, seed, categories and per category the drawings read,
  skipped by reason, duplicates removed and taken per split. KFP wants namespace.Name."""
  TYPE_NAME = 'quickdraw.SamplingManifest'


class QuickDrawExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGen's spec plus the sampling manifest as its own output channel."""
  OUTPUTS = dict(standard_component_specs.FileBasedExampleGenSpec.OUTPUTS,
                 **{MANIFEST_KEY: component_spec.ChannelParameter(type=SamplingManifest)})


def sampling_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """The sampling parameters packed into the component's CustomConfig (a Struct in an Any)."""
  custom_config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY],
                            custom_config)
  struct = struct_pb2.Struct()
  custom_config.custom_config.Unpack(struct)
  # A Struct stores every number as a double: give the counts back as ints.
  return {key: int(value) if isinstance(value, float) and value.is_integer() else value
          for key, value in json_format.MessageToDict(struct).items()}


class _SampleCategory(beam.DoFn):
  """One category: read, deduplicate, sample, render. Main output: (split, serialized Example)."""

  MANIFEST = 'manifest'

  def __init__(self, config: Dict[str, Any]):
    self._config = config

  def process(self, category: str):
    c = self._config
    sample = category_sampling.sample_category(
        c['source'], category, c['train_per_category'], c['test_per_category'], c['seed'],
        max_skip_ratio=c.get('max_skip_ratio', category_sampling.DEFAULT_MAX_SKIP_RATIO),
        recognized_only=bool(c.get('recognized_only', False)))
    row = sample.manifest_row()
    logging.info('QuickDrawExampleGen: %r (%s): %d read, %d skipped, %d duplicates removed '
                 '-> %d train + %d test', category, sample.format, sample.read,
                 row['skipped_total'], sample.duplicates, len(sample.train), len(sample.test))
    for reason, where in row['first_skipped'].items():
      logging.warning('QuickDrawExampleGen: skipped %d line(s) of %r as %s, the first: %s',
                      row['skipped'][reason], category, reason, where)
    with progress.Progress(len(sample.train) + len(sample.test),
                           f'QuickDrawExampleGen: rendering {category!r}', 'drawings') as shown:
      for split, items in (('train', sample.train), ('test', sample.test)):
        for drawing_id, item in items:
          png = drawing_rendering.render_item(item, c['render_size'], c['stroke_width'])
          example = drawing_rendering.to_example(drawing_id, category, png)
          shown.update()
          # Deterministic: the feature map is written in a fixed order, so the same seed and
          # source give byte-identical records.
          yield split, example.SerializeToString(deterministic=True)
    yield beam.pvalue.TaggedOutput(self.MANIFEST, row)


_TOTALS = ('read', 'skipped_total', 'not_recognized_filtered', 'duplicates_removed', 'train',
           'test')


def _write_manifest(rows: List[Dict[str, Any]], paths: Sequence[str],
                    header: Dict[str, Any]) -> None:
  rows = sorted(rows, key=lambda r: r['category'])
  formats = sorted({r['format'] for r in rows})
  manifest = dict(header, format=formats[0] if len(formats) == 1 else 'mixed', formats=formats,
                  totals={key: sum(r[key] for r in rows) for key in _TOTALS}, categories=rows)
  for path in paths:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, 'w') as f:
      json.dump(manifest, f, indent=2)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Seeded category choice, per-category sampling in Beam, and a manifest of counts."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    # The manifest artifact is the record; the copy inside Examples serves readers that hold
    # only the examples (read_manifest accepts either).
    manifests = output_dict.get(MANIFEST_KEY) or []
    self._manifest_paths = [os.path.join(a.uri, MANIFEST_FILE) for a in manifests + [examples]]
    super().Do(input_dict, output_dict, exec_properties)
    if manifests:
      totals = read_manifest(manifests[0])['totals']
      for key, value in totals.items():
        manifests[0].set_int_custom_property(key, value)

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    # Required by the base class, whose GenerateExamplesByBeam (overridden below) would call
    # it once per split; here one transform yields both splits at once.
    return _SampledExamples

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    config = sampling_config(exec_properties)
    config['source'] = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    categories = list(config.get('categories') or []) or quickdraw_source.choose_categories(
        quickdraw_source.list_categories(config['source']), config['num_categories'],
        config['seed'])
    logging.info('QuickDrawExampleGen: %d categories from %s: %s', len(categories),
                 config['source'], ', '.join(categories))
    tagged = pipeline | 'Sample' >> _SampledExamples(config, categories)
    header = {key: config.get(key, default) for key, default in (
        ('source', None), ('seed', None), ('train_per_category', None),
        ('test_per_category', None), ('render_size', None), ('stroke_width', None),
        ('max_skip_ratio', category_sampling.DEFAULT_MAX_SKIP_RATIO),
        ('recognized_only', False))}
    header['category_choice'] = 'explicit' if config.get('categories') else 'random (seeded)'
    header['chosen_categories'] = sorted(categories)
    _ = (tagged[_SampleCategory.MANIFEST]
         | 'CollectManifest' >> beam.combiners.ToList()
         | 'WriteManifest' >> beam.Map(_write_manifest, self._manifest_paths, header))
    splits = (tagged[None]
              | 'BySplit' >> beam.Partition(lambda item, _: SPLITS.index(item[0]), len(SPLITS)))
    return {name: splits[i] | f'Drop[{name}]' >> beam.Values() for i, name in enumerate(SPLITS)}


@beam.ptransform_fn
def _SampledExamples(pipeline: beam.Pipeline, config: Dict[str, Any],
                     categories: Sequence[str]) -> beam.pvalue.DoOutputsTuple:
  """Categories in parallel: (split, tf.Example) pairs plus a manifest row per category."""
  return (pipeline
          | 'Categories' >> beam.Create(sorted(categories))
          | 'Spread' >> beam.Reshuffle()
          | 'SampleAndRender' >> beam.ParDo(_SampleCategory(config)).with_outputs(
              _SampleCategory.MANIFEST, main=None))


class _Driver(example_gen_driver.FileBasedDriver):
  """File fingerprints for local and gs:// sources; an https:// prefix cannot be listed."""

  def get_input_processor(self, splits, range_config=None, input_base_uri=None):
    if input_base_uri and quickdraw_source.is_url(input_base_uri):
      return input_processor.QueryBasedInputProcessor(splits, range_config)
    return super().get_input_processor(splits, range_config, input_base_uri)


class QuickDrawExampleGen(example_gen_component.FileBasedExampleGen):
  """Samples `num_categories` x (train + test) drawings from `source` into train/test splits.

  Outputs `examples` (Examples) and `manifest` (SamplingManifest).
  """

  SPEC_CLASS = QuickDrawExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = _Driver

  def __init__(self, source: str, num_categories: int, train_per_category: int,
               test_per_category: int, seed: int, render_size: int = 256,
               stroke_width: int = 3, categories: Sequence[str] = (),
               max_skip_ratio: float = category_sampling.DEFAULT_MAX_SKIP_RATIO,
               recognized_only: bool = False):
    struct = struct_pb2.Struct()
    struct.update({
        'num_categories': num_categories, 'train_per_category': train_per_category,
        'test_per_category': test_per_category, 'seed': seed, 'render_size': render_size,
        'stroke_width': stroke_width, 'categories': list(categories),
        'max_skip_ratio': max_skip_ratio, 'recognized_only': recognized_only})
    packed = any_pb2.Any()
    packed.Pack(struct)
    # FileBasedExampleGen.__init__ builds its own spec with `examples` only, so the spec
    # (with `manifest`) is built here and handed to the Beam component base directly.
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=_SOURCE_PATTERN) for name in SPLITS])
    spec = QuickDrawExampleGenSpec(
        input_base=source, input_config=input_config,
        output_config=example_gen_pb2.Output(),  # The input's splits, as the default does.
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
        range_config=None, output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        examples=types.Channel(type=standard_artifacts.Examples),
        **{MANIFEST_KEY: types.Channel(type=SamplingManifest)})
    base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


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
