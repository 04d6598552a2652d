"""Keras models, their training, Transform and feature definitions, read back layer by layer
(model_anatomy.py). Imports only common/ (layers: common < models < domain < components <
pipeline < serving, kubeflow < benchmarks; .importlinter, tests/test_import_layers.py)."""
