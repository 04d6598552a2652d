"""QuickDrawExampleGen: samples Quick, Draw! categories and emits rendered tf.Examples.

Built on TFX's file-based ExampleGen extension point: `FileBasedExampleGen` with a custom
executor (`BaseExampleGenExecutor.GenerateExamplesByBeam` overridden, because sampling
decides the train/test split itself rather than hashing records into buckets) and a driver
that also accepts an https:// source, which cannot be globbed.
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
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import quickdraw_data

SPLITS = ('train', 'test')
MANIFEST_FILE = 'manifest.json'
# Every category file at the source: the driver fingerprints them, so a changed source
# invalidates the cache.
_SOURCE_PATTERN = '*.ndjson*'


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
    sample = quickdraw_data.sample_category(
        c['source'], category, c['train_per_category'], c['test_per_category'], c['seed'])
    for split, drawings in (('train', sample.train), ('test', sample.test)):
      for drawing_id, drawing in drawings:
        png = quickdraw_data.render_png(drawing, c['render_size'], c['stroke_width'])
        example = quickdraw_data.to_example(drawing_id, category, png)
        # Deterministic: the feature map is written in a fixed order, so the same seed and
        # source give byte-identical records.
        yield split, example.SerializeToString(deterministic=True)
    yield beam.pvalue.TaggedOutput(self.MANIFEST, {
        'category': category, 'file': sample.path, 'read': sample.read,
        'duplicates_removed': sample.duplicates,
        'train': len(sample.train), 'test': len(sample.test)})


def _write_manifest(rows: List[Dict[str, Any]], path: str, header: Dict[str, Any]) -> None:
  manifest = dict(header, categories=sorted(rows, key=lambda r: r['category']))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(manifest, f, indent=2)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Seeded category choice, per-category sampling in Beam, and a manifest of counts."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    self._manifest_path = os.path.join(examples.uri, MANIFEST_FILE)
    super().Do(input_dict, output_dict, exec_properties)

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    # Required by the base class, whose GenerateExamplesByBeam (overridden below) would call
    # it once per split; here one transform yields both splits at once.
    return _SampledExamples

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    config = sampling_config(exec_properties)
    config['source'] = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    categories = list(config.get('categories') or []) or quickdraw_data.choose_categories(
        quickdraw_data.list_categories(config['source']), config['num_categories'], config['seed'])
    logging.info('QuickDrawExampleGen: %d categories from %s: %s', len(categories),
                 config['source'], ', '.join(categories))
    tagged = pipeline | 'Sample' >> _SampledExamples(config, categories)
    header = {key: config[key] for key in
              ('source', 'seed', 'train_per_category', 'test_per_category', 'render_size',
               'stroke_width')}
    header['format'] = 'simplified ndjson'
    _ = (tagged[_SampleCategory.MANIFEST]
         | 'CollectManifest' >> beam.combiners.ToList()
         | 'WriteManifest' >> beam.Map(_write_manifest, self._manifest_path, header))
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
    if input_base_uri and quickdraw_data.is_url(input_base_uri):
      return input_processor.QueryBasedInputProcessor(splits, range_config)
    return super().get_input_processor(splits, range_config, input_base_uri)


class QuickDrawExampleGen(example_gen_component.FileBasedExampleGen):
  """Samples `num_categories` x (train + test) drawings from `source` into train/test splits."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = _Driver

  def __init__(self, source: str, num_categories: int, train_per_category: int,
               test_per_category: int, seed: int, render_size: int = 256,
               stroke_width: int = 3, categories: Sequence[str] = ()):
    struct = struct_pb2.Struct()
    struct.update({
        'num_categories': num_categories, 'train_per_category': train_per_category,
        'test_per_category': test_per_category, 'seed': seed, 'render_size': render_size,
        'stroke_width': stroke_width, 'categories': list(categories)})
    packed = any_pb2.Any()
    packed.Pack(struct)
    super().__init__(
        input_base=source,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=_SOURCE_PATTERN) for name in SPLITS]),
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed))


def read_manifest(examples: types.Artifact) -> Dict[str, Any]:
  with tf.io.gfile.GFile(os.path.join(examples.uri, MANIFEST_FILE)) as f:
    return json.load(f)
