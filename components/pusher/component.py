"""RegistryPusher: pushes a blessed model, its model card and a search gallery, atomically.

The registry is a folder per model with one numbered version folder per push
(`<registry>/<model>/<version>/`, TF Serving's layout; domain/registry_store.py documents
it). Each version holds the SavedModel with `assets.extra/categories.txt`, `model_card.json` and
`model_card.md` (metrics, categories, data manifest, training configuration, lineage, code
version) and `gallery.npz` (embeddings, categories, ids and PNGs of the gallery drawings, so
search needs none of the pipeline's artifacts). Everything is staged in a temporary folder and
published under a version number claimed last, with model_card.json written after every other
file (`domain/registry_store.py`): readers never see a half push, and concurrent pushes get
different numbers.

Beyond TFX's Pusher inputs (model, model_blessing) it takes, all optional, the examples
(gallery PNGs, data manifest), the Evaluator's embeddings (the test split's gallery
embeddings, not recomputed) and its evaluation (every metric for the card). This module
declares the component; executor.py does the work and model_card.py writes the card.
"""
from typing import Any, Dict, Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import json_utils

from components.artifact_types import Embeddings
from components.pusher.executor import EMBEDDINGS_KEY, EVALUATION_KEY, EXAMPLES_KEY, Executor


class RegistryPusherSpec(types.ComponentSpec):
  """TFX's PusherSpec plus the optional inputs the model card and the gallery read."""
  PARAMETERS = dict(standard_component_specs.PusherSpec.PARAMETERS)
  INPUTS = dict(
      standard_component_specs.PusherSpec.INPUTS,
      **{EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples,
                                                       optional=True),
         EMBEDDINGS_KEY: component_spec.ChannelParameter(type=Embeddings,
                                                         optional=True),
         EVALUATION_KEY: component_spec.ChannelParameter(
             type=standard_artifacts.ModelEvaluation, optional=True)})
  OUTPUTS = dict(standard_component_specs.PusherSpec.OUTPUTS)


class RegistryPusher(base_component.BaseComponent):
  """TFX's Pusher contract (blessing check, PushedModel artifact) for the model registry."""

  SPEC_CLASS = RegistryPusherSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel,
               push_destination: pusher_pb2.PushDestination,
               custom_config: Optional[Dict[str, Any]] = None,
               examples: Optional[types.BaseChannel] = None,
               embeddings: Optional[types.BaseChannel] = None,
               evaluation: Optional[types.BaseChannel] = None):
    spec = RegistryPusherSpec(
        model=model, model_blessing=model_blessing, push_destination=push_destination,
        custom_config=json_utils.dumps(custom_config), examples=examples,
        embeddings=embeddings, evaluation=evaluation,
        pushed_model=types.Channel(type=standard_artifacts.PushedModel))
    super().__init__(spec=spec)
