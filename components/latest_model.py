"""Warm start: the newest model one Trainer produced in earlier runs, as its `base_model`.

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
