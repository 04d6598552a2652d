"""RegistryPusher: TFX's Pusher plus a model card beside every pushed version.

The registry is a folder per model with one numbered version folder per push
(`<registry>/<model>/<unix time>/`), TF Serving's layout; each version holds the SavedModel,
`assets.extra/categories.txt`, and `model_card.json` (metrics, categories, data, lineage).
"""
import datetime
import json
import os
from typing import Any, Dict, List

from absl import logging
import tensorflow as tf
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from components.embedding_evaluator import HEADLINE_METRICS

MODEL_CARD_FILE = 'model_card.json'
CATEGORIES_FILE = os.path.join('assets.extra', 'categories.txt')


class Executor(pusher_executor.Executor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    pushed = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not pushed.get_int_custom_property('pushed'):
      return
    destination = pushed.get_string_custom_property('pushed_destination')
    model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
    blessing = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.MODEL_BLESSING_KEY])
    custom_config = json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or 'null') or {}
    with tf.io.gfile.GFile(os.path.join(destination, CATEGORIES_FILE)) as f:
      categories = [line.strip() for line in f if line.strip()]
    card = {
        'model_name': custom_config.get('model_name'),
        'version': pushed.get_string_custom_property('pushed_version'),
        'pushed_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'metrics': {key: blessing.get_float_custom_property(key) for key in HEADLINE_METRICS},
        'categories': categories,
        'data': custom_config.get('data', {}),
        'signatures': {
            'serving_default': 'serialized tf.Example with image_png -> probabilities, class_id, '
                               'category',
            'embed': 'serialized tf.Example -> embedding (fc_1, 1024-d), probabilities, '
                     'class_id, category',
            'serving_png': 'PNG bytes (any size, grayscale or RGB) -> same as embed',
        },
        'lineage': {
            'pipeline_name': self._context.pipeline_info.id if self._context and
                             self._context.pipeline_info else None,
            'pipeline_run_id': self._context.pipeline_run_id if self._context else None,
            'model_artifact': {'id': model.id, 'uri': model.uri},
            'blessing_artifact': {'id': blessing.id, 'uri': blessing.uri},
        },
        'license': 'Trained on Quick, Draw! data made available by Google, Inc. under CC BY 4.0.',
    }
    with tf.io.gfile.GFile(os.path.join(destination, MODEL_CARD_FILE), 'w') as f:
      json.dump(card, f, indent=2)
    logging.info('Model card written to %s', os.path.join(destination, MODEL_CARD_FILE))


class RegistryPusher(pusher_component.Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)


def read_model_card(version_dir: str) -> Dict[str, Any]:
  with tf.io.gfile.GFile(os.path.join(version_dir, MODEL_CARD_FILE)) as f:
    return json.load(f)
