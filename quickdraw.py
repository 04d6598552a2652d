"""The project's custom artifact types, importable by the names ML Metadata knows them by.

A type's TYPE_NAME (`quickdraw.Embeddings`, ...) is its name in ML Metadata and, compiled for
Kubeflow, the title of its schema; TFX's Kubeflow V2 entrypoint turns an input or output
artifact back into its class by importing that title as a class path. So `quickdraw.<Type>`
must import: this module resolves each name on first use, importing nothing before.
"""
import importlib

# TYPE_NAME's last part -> the class in components/artifact_types.py.
_TYPES = {'SamplingManifest': 'SamplingManifest', 'Embeddings': 'Embeddings',
          'ModelComparison': 'Comparison'}


def __getattr__(name: str):
  if name not in _TYPES:
    raise AttributeError(f'module {__name__!r} has no artifact type {name!r}')
  return getattr(importlib.import_module('components.artifact_types'), _TYPES[name])
