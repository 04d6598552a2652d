"""EmbeddingEvaluator, the component: TFMA's evaluation and validation, the retrieval metrics
and a blessing, declared as a Python-function component; executor.py does the work.

TensorFlow Model Analysis evaluates the exported SavedModel (tfma_evaluation.py): top-1/top-5
accuracy on both splits, the confusion matrix, the leave-one-out retrieval mAP as a TFMA metric
(retrieval_metric.py), and the validation of value thresholds and, against the baseline model ML
Metadata resolved (the newest blessed model of the same Trainer), change thresholds. The
evaluation artifact is what TFMA writes (`tfma.load_eval_result(uri)`), plus metrics.json: the
report's and the model card's view, with bootstrap intervals and the retrieval details TFMA has
no metric for (per-category AP, precision/recall@k, PR curve, cosine, floors). Outputs and their
schema: docs/metrics.md.
"""
import os
from typing import Dict

import apache_beam as beam
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.v1.dsl.components import (BeamComponentParameter, InputArtifact, OutputArtifact,
                                   Parameter, component)

from components.artifact_types import Embeddings
from components.evaluator import executor


@component(use_beam=True)
def EmbeddingEvaluator(  # pylint: disable=invalid-name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    embeddings: OutputArtifact[Embeddings],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    model_name: Parameter[str],
    baseline_model: InputArtifact[standard_artifacts.Model] = None,
    min_test_accuracy: Parameter[float] = 0.0,
    min_map: Parameter[float] = 0.0,
    max_accuracy_drop: Parameter[float] = -1.0,
    max_map_drop: Parameter[float] = -1.0,
    train_eval_max_examples: Parameter[int] = 0,
    batch_size: Parameter[int] = 64,
    raw_pixels_size: Parameter[int] = 128,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """TFMA's evaluation of train (top-1/top-5) and test (also confusion, retrieval mAP), the
  retrieval details and intervals, and a blessing from TFMA's validation.

  Blessed when test accuracy >= min_test_accuracy and mAP >= min_map and, when a
  `baseline_model` is given, neither dropped below the baseline's by more than
  max_accuracy_drop / max_map_drop (< 0: no change threshold; 0: not worse). Without a baseline
  the change thresholds are rubber-stamped, as TFX's Evaluator does.
  `train_eval_max_examples` > 0 measures train metrics on that many drawings only (a fixed
  sample). `raw_pixels_size` > 0: the raw-pixel mAP floor at that image size.
  """
  executor.evaluate(
      examples=examples, model=model, evaluation=evaluation, embeddings=embeddings,
      blessing=blessing, model_name=model_name, baseline_model=baseline_model,
      min_test_accuracy=min_test_accuracy, min_map=min_map, max_accuracy_drop=max_accuracy_drop,
      max_map_drop=max_map_drop, train_eval_max_examples=train_eval_max_examples,
      batch_size=batch_size, raw_pixels_size=raw_pixels_size, beam_pipeline=beam_pipeline)


def output_artifacts(root: str) -> Dict[str, list]:
  """One new, empty artifact per output of the component, in `root/<output name>`: what a
  runner hands the executor, for running it outside a pipeline (tests, benchmarks)."""
  outputs = {}
  for name, channel in EmbeddingEvaluator.SPEC_CLASS.OUTPUTS.items():
    artifact = channel.type()
    artifact.uri = os.path.join(root, name)
    tf.io.gfile.makedirs(artifact.uri)
    outputs[name] = [artifact]
  return outputs
