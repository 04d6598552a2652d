"""The project's custom artifact types, one module for all, as TFX's standard_artifacts.

Each TYPE_NAME is `quickdraw.<Name>`: the form Kubeflow Pipelines v2 requires of custom types,
and the name ML Metadata stores them under; quickdraw.py makes them importable by it.
"""
from tfx.types import artifact


class SamplingManifest(artifact.Artifact):
  """manifest.json: source, formats, seed, categories and per category the drawings read,
  skipped by reason, duplicates removed and taken per split."""
  TYPE_NAME = 'quickdraw.SamplingManifest'


class Embeddings(artifact.Artifact):
  """fc_1 embeddings of the test split, with each drawing's id and category."""
  TYPE_NAME = 'quickdraw.Embeddings'


class Comparison(artifact.Artifact):
  """A table of two models' metrics (comparison.json, comparison.md)."""
  TYPE_NAME = 'quickdraw.ModelComparison'
