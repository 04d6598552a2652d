"""The Keras-2 switch, set in this one place.

The models are tf_keras (Keras 2) models, and TF Transform's Keras layer must be one too, so
TensorFlow's `tf.keras` has to be Keras 2: TF_USE_LEGACY_KERAS=1 in the environment before
TensorFlow is first imported (TensorFlow reads it once). `enable()` sets it, and every entry
point calls it before anything imports TensorFlow:

  quickdraw-tfx, python -m pipeline.run   pipeline/cli.py main(), pipeline/run.py main() and run()
  tests                                   tests/conftest.py, before any test module is imported
  benchmarks                              each script, first thing

What those processes start inherits the environment: LocalDagRunner runs the components (the
ExampleGen's Beam workers, the Trainer's run_fn, the Evaluator) in the same process or in child
processes. Processes started by other programs get it from their environment instead: the
Kubeflow image (kubeflow/Dockerfile, ENV) and the Makefile's targets (export).
"""
import os

ENV = 'TF_USE_LEGACY_KERAS'


def enable() -> None:
  """Selects Keras 2 for this process and the processes it starts; call before TensorFlow is
  imported."""
  os.environ[ENV] = '1'
