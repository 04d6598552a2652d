"""The ExampleGen's work: seeded category choice, per-category sampling and rendering in Beam
(one element per category), the two splits as tf.Examples, and the manifest of counts."""
import json
import os
from typing import Any, Dict, List, Sequence

from absl import logging
import apache_beam as beam
from google.protobuf import json_format
from google.protobuf import struct_pb2
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from common import progress
from components.example_gen import category_sampling
from components.example_gen.outputs import MANIFEST_FILE, MANIFEST_KEY, SPLITS, read_manifest
from domain import drawing_rendering
from domain import quickdraw_source


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
