"""QuickDrawExampleGen: samples Quick, Draw! categories and emits rendered tf.Examples.

Built on TFX's file-based ExampleGen extension point: `FileBasedExampleGen` with a custom
executor (`BaseExampleGenExecutor.GenerateExamplesByBeam` overridden, because sampling
decides the train/test split itself rather than hashing records into buckets) and a driver
that also accepts an https:// source, which cannot be globbed. Besides `examples` it outputs
`manifest`, a `quickdraw.SamplingManifest` artifact: what was read, skipped, deduplicated
and taken per category (outputs.py reads it back). This module declares the component;
executor.py does the work.
"""
from typing import Sequence

from google.protobuf import any_pb2
from google.protobuf import struct_pb2
from tfx import types
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from components.artifact_types import SamplingManifest
from components.example_gen import category_sampling
from components.example_gen.executor import Executor
from components.example_gen.outputs import MANIFEST_KEY, SPLITS
from domain import quickdraw_source

# Every file at the source: the driver fingerprints them, so a changed source invalidates
# the cache (a glob cannot say "*.ndjson* or *.npy").
_SOURCE_PATTERN = '*'


class QuickDrawExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGen's spec plus the sampling manifest as its own output channel."""
  OUTPUTS = dict(standard_component_specs.FileBasedExampleGenSpec.OUTPUTS,
                 **{MANIFEST_KEY: component_spec.ChannelParameter(type=SamplingManifest)})


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
