"""ModelComparison: two evaluated models side by side on every metric (docs/metrics.md, 3).
This module declares the component; executor.py does the work.

Reads the two `ModelEvaluation` artifacts' metrics.json and writes `comparison.json` and the
same table as `comparison.md` for the report. Given the two `Embeddings` artifacts too (the
per-drawing outcomes), it adds paired bootstrap intervals of the test-accuracy and mAP
differences: whether one model is better than the other beyond what the test sample explains.
"""
from tfx.types import standard_artifacts
from tfx.v1.dsl.components import InputArtifact, OutputArtifact, component

from components.artifact_types import Comparison, Embeddings
from components.model_comparison import executor


@component
def ModelComparison(  # pylint: disable=invalid-name
    first_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    second_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    comparison: OutputArtifact[Comparison],
    first_embeddings: InputArtifact[Embeddings] = None,
    second_embeddings: InputArtifact[Embeddings] = None,
) -> None:
  """Every metric of two EmbeddingEvaluator outputs side by side: JSON and Markdown.

  The embeddings are optional: without both, `paired_difference` is null.
  """
  executor.run(first_evaluation, second_evaluation, comparison, first_embeddings,
               second_embeddings)
