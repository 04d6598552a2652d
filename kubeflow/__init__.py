"""Kubeflow Pipelines: compile create_pipeline() for a GPU cluster, submit runs, size the job.

  quickdraw-tfx compile-kfp --image IMAGE --output-dir gs://BUCKET/quickdraw-tfx ...
  quickdraw-tfx submit-kfp --host URL --spec outputs/kfp/quickdraw-tfx-full.yaml

The container image recipe is kubeflow/Dockerfile; docs/kubeflow.md is the worked example.
"""
