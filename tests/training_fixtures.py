"""Tiny inputs for run_fn without a pipeline: raw examples, a real transform graph, FnArgs.

The examples are synthetic drawings (tests/conftest.py) rendered by the ExampleGen's own code;
the transform graph is built by tf.Transform with the project's preprocessing_fn, at a small
image size so a model trains in seconds. Also run as a script by the distribution test's
worker processes:

  python -m tests.training_fixtures WORK_DIR OUT_WEIGHTS.npz '<custom_config json>'
"""
import functools
import json
import os
import random
import sys

from common import legacy_keras

legacy_keras.enable()  # Also run as a script (below): before TensorFlow is imported.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import tensorflow as tf
from tfx.components.trainer import fn_args_utils
from tfx.components.util import tfxio_utils
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from domain import drawing_rendering
from models import preprocessing
from tests.conftest import synthetic_drawing

CATEGORIES = ('line', 'box', 'zig zag')
IMAGE_SIZE = 32
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'schema', 'schema.pbtxt')


def write_examples(folder: str, train_per_category: int = 16, test_per_category: int = 4,
                   seed: int = 0) -> str:
  """`folder`/Split-{train,test}/data.tfrecord.gz of rendered synthetic drawings, as ExampleGen."""
  rng = random.Random(seed)
  splits = {'train': [], 'test': []}
  for index, category in enumerate(CATEGORIES):
    for number in range(train_per_category + test_per_category):
      split = 'train' if number < train_per_category else 'test'
      png = drawing_rendering.render_png(synthetic_drawing(index, rng))
      splits[split].append(drawing_rendering.to_example(f'{category}-{number}', category, png))
  for split, examples in splits.items():
    os.makedirs(os.path.join(folder, f'Split-{split}'), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, f'Split-{split}', 'data.tfrecord.gz'),
                              options='GZIP') as writer:
      for example in examples:
        writer.write(example.SerializeToString())
  return folder


def build_transform_graph(examples_dir: str, output_dir: str,
                          image_size: int = IMAGE_SIZE) -> str:
  """Runs tf.Transform (Beam, in process) over the train split; writes the transform graph."""
  import apache_beam as beam
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata
  from tensorflow_transform.tf_metadata import metadata_io
  from tensorflow_transform.tf_metadata import schema_utils
  from tfx.utils import io_utils
  from tensorflow_metadata.proto.v0 import schema_pb2

  schema = io_utils.parse_pbtxt_file(SCHEMA_FILE, schema_pb2.Schema())
  metadata = dataset_metadata.DatasetMetadata(schema)
  spec = schema_utils.schema_as_feature_spec(schema).feature_spec
  instances = []
  for record in tf.data.TFRecordDataset(
      tf.io.gfile.glob(os.path.join(examples_dir, 'Split-train', '*')), compression_type='GZIP'):
    parsed = tf.io.parse_single_example(record, spec)
    instances.append({key: value.numpy() for key, value in parsed.items()})
  fn = functools.partial(preprocessing.preprocessing_fn,
                         custom_config={'image_size': image_size})
  with beam.Pipeline() as pipeline:
    with tft_beam.Context(temp_dir=os.path.join(output_dir, 'tmp')):
      transform_fn = ((pipeline | beam.Create(instances), metadata)
                      | tft_beam.AnalyzeDataset(fn))
      _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  # The raw schema beside the graph, as TFX's Transform writes it (TFTransformOutput reads it).
  metadata_io.write_metadata(metadata, os.path.join(output_dir, 'metadata'))
  return output_dir


def examples_and_transform(folder: str):
  """(examples folder, transform graph folder) of the default tiny data under `folder`."""
  examples = write_examples(os.path.join(folder, 'examples'))
  return examples, build_transform_graph(examples, os.path.join(folder, 'transform'))


def fn_args(examples_dir: str, transform_dir: str, work_dir: str, base_model: str = None,
            **config) -> fn_args_utils.FnArgs:
  """FnArgs as the Trainer executor builds them, for a 1-epoch tiny skNet unless overridden."""
  examples = standard_artifacts.Examples()
  examples.uri = examples_dir
  examples.split_names = artifact_utils.encode_split_names(['train', 'test'])
  custom_config = dict(model_name='sknet', epochs=1, batch_size=8, learning_rate=1e-3,
                       batchnorm_momentum=0.9, batchnorm_recalibration_batches=2, seed=1,
                       image_size=IMAGE_SIZE)
  custom_config.update(config)
  return fn_args_utils.FnArgs(
      working_dir=work_dir,
      train_files=[os.path.join(examples_dir, 'Split-train', '*')],
      eval_files=[os.path.join(examples_dir, 'Split-test', '*')],
      transform_output=transform_dir,
      serving_model_dir=os.path.join(work_dir, 'model', 'Format-Serving'),
      model_run_dir=os.path.join(work_dir, 'model_run'),
      base_model=base_model,
      custom_config=custom_config,
      data_accessor=fn_args_utils.DataAccessor(
          tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
          record_batch_factory=None, data_view_decode_fn=None))


def _worker_main(argv) -> int:
  """One worker of the distribution test: trains under TF_CONFIG and saves its weights."""
  from models import distribution, trainer  # pylint: disable=import-outside-toplevel
  strategy = distribution.strategy_for_environment()  # Before any other TensorFlow work.
  work_dir, weights_file, config = argv[1], argv[2], json.loads(argv[3])
  args = fn_args(config.pop('examples_dir'), config.pop('transform_dir'), work_dir, **config)
  model = trainer.train(args, strategy)
  import numpy as np  # pylint: disable=import-outside-toplevel
  np.savez(weights_file, replicas=strategy.num_replicas_in_sync,
           **{variable.name: variable.numpy() for variable in model.variables})
  return 0


if __name__ == '__main__':
  sys.exit(_worker_main(sys.argv))
