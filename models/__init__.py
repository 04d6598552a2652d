"""Keras models, their training and feature definitions: the bottom layer, importing no other
package of the project (layers: models < components < pipeline < serving, kubeflow, benchmarks;
checked by tests/test_import_layers.py)."""
