"""Models from earlier runs, resolved from ML Metadata per Trainer: the newest one as a warm
start's `base_model`, and the newest blessed one as an Evaluator's baseline.

TFX's LatestArtifactStrategy reports an input-resolution error (with a traceback in the log)
when there is no model yet, as on a pipeline's first run; this strategy resolves to no
artifact instead, so the first run simply trains from scratch.
"""
from typing import Dict, List, Optional

from tfx import types
from tfx import v1 as tfx


class LatestOrNoneStrategy(tfx.dsl.experimental.ResolverStrategy):
  """The artifact with the highest id per input; an empty list when there is none."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    return {key: sorted(artifacts, key=lambda a: a.id)[-1:]
            for key, artifacts in input_dict.items()}


def latest_model_resolver(trainer_id: str) -> tfx.dsl.Resolver:
  """A Resolver whose output 'model' is the latest `trainer_id` model (none at first)."""
  return tfx.dsl.Resolver(
      strategy_class=LatestOrNoneStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=trainer_id, output_key='model'),
  ).with_id(f'LatestModelResolver.{trainer_id.split(".", 1)[-1]}')


def blessed_baseline_resolver(trainer_id: str, evaluator_id: str) -> tfx.dsl.Resolver:
  """A Resolver whose output 'model' is the newest `trainer_id` model that `evaluator_id`
  blessed (none on the first run: the Evaluator then rubber-stamps its change thresholds).

  Both channels are filtered by producer, so one model is never compared with another's
  baseline. TFX's LatestBlessedModelStrategy matches the blessing's `current_model_id` with
  the model's id and requires `blessed` = 1, the contract the EmbeddingEvaluator writes.
  """
  return tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=trainer_id, output_key='model'),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                     producer_component_id=evaluator_id, output_key='blessing'),
  ).with_id(f'BaselineResolver.{trainer_id.split(".", 1)[-1]}')
