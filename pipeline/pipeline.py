"""create_pipeline(config): the whole DAG as a pure function of a PipelineConfig.

QuickDrawExampleGen -> StatisticsGen -> ExampleValidator <- ImportSchemaGen(schema/)
                    -> Transform -> Trainer.<model> -> EmbeddingEvaluator.<model> -> Pusher.<model>
BaselineResolver.<model> (newest blessed model of Trainer.<model>) -> EmbeddingEvaluator.<model>
EmbeddingEvaluator.<first model> + EmbeddingEvaluator.<second model> -> ModelComparison
  (metrics and per-drawing outcomes: paired intervals of the differences)
"""
import dataclasses
import os
from typing import Optional

from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components.evaluator.component import EmbeddingEvaluator
from components.example_gen.component import QuickDrawExampleGen
from components.model_comparison.component import ModelComparison
from components.pusher.component import RegistryPusher
from components.resolvers import blessed_baseline_resolver, latest_model_resolver
from pipeline.config import PipelineConfig

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'schema')
PREPROCESSING_FN = 'models.preprocessing.preprocessing_fn'
RUN_FN = 'models.trainer.run_fn'


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config: Optional[object] = None,
                    schema_file: Optional[str] = None) -> tfx_pipeline.Pipeline:
  """The TFX pipeline for `config`; `metadata_connection_config` defaults to SQLite.

  `schema_file` defaults to this checkout's schema/schema.pbtxt; a compiled pipeline for a
  cluster passes the path inside its container image instead (kubeflow/compile_kfp.py).
  """
  example_gen = QuickDrawExampleGen(
      source=config.source, num_categories=config.num_categories,
      train_per_category=config.train_per_category, test_per_category=config.test_per_category,
      seed=config.seed, render_size=config.render_size, stroke_width=config.stroke_width,
      categories=config.categories, max_skip_ratio=config.max_skip_ratio,
      recognized_only=config.recognized_only)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_importer = tfx.components.ImportSchemaGen(
      schema_file=schema_file or os.path.join(SCHEMA_DIR, 'schema.pbtxt'))
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_importer.outputs['schema'])
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'], schema=schema_importer.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN, custom_config={'image_size': config.image_size},
      # The Trainer applies the transform graph on the fly to the (small) PNG examples
      # instead of reading materialized 128x128 float images.
      materialize=False)
  components = [example_gen, statistics_gen, schema_importer, example_validator, transform]

  data = {'source': config.source, 'seed': config.seed, 'num_categories': config.num_categories,
          'train_per_category': config.train_per_category,
          'test_per_category': config.test_per_category, 'image_size': config.image_size,
          'render_size': config.render_size, 'stroke_width': config.stroke_width}
  evaluators = []
  for model_name in config.models:
    training = config.training[model_name]
    # Warm start: the newest model of this Trainer from earlier runs becomes its base_model.
    latest_model = (latest_model_resolver(f'Trainer.{model_name}') if training.warm_start
                    else None)
    if latest_model:
      components.append(latest_model)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs['examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_importer.outputs['schema'],
        train_args=tfx.proto.TrainArgs(splits=['train']),
        # run_fn does not look at the test split while fitting; the Evaluator does.
        eval_args=tfx.proto.EvalArgs(splits=['test']),
        custom_config=dict(dataclasses.asdict(training), model_name=model_name,
                           seed=config.seed, image_size=config.image_size),
        base_model=latest_model.outputs['model'] if latest_model else None,
    ).with_id(f'Trainer.{model_name}')
    evaluator_id = f'EmbeddingEvaluator.{model_name}'
    # Change thresholds compare with the newest model of this Trainer blessed before (TFMA).
    baseline = (blessed_baseline_resolver(f'Trainer.{model_name}', evaluator_id)
                if config.max_accuracy_drop is not None or config.max_map_drop is not None
                else None)
    if baseline:
      components.append(baseline)
    evaluator = EmbeddingEvaluator(
        examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
        baseline_model=baseline.outputs['model'] if baseline else None,
        model_name=model_name, min_test_accuracy=config.min_test_accuracy,
        min_map=config.min_map,
        max_accuracy_drop=-1.0 if config.max_accuracy_drop is None else config.max_accuracy_drop,
        max_map_drop=-1.0 if config.max_map_drop is None else config.max_map_drop,
        train_eval_max_examples=config.train_eval_max_examples,
        raw_pixels_size=config.image_size if config.raw_pixels_floor else 0,
    ).with_id(evaluator_id)
    pusher = RegistryPusher(
        model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(config.registry_dir, model_name))),
        custom_config={'model_name': model_name, 'data': data,
                       'training': dataclasses.asdict(training),
                       'gallery_splits': list(config.gallery_splits)},
        # For the model card and the search gallery pushed beside the model.
        examples=example_gen.outputs['examples'], embeddings=evaluator.outputs['embeddings'],
        evaluation=evaluator.outputs['evaluation'],
    ).with_id(f'Pusher.{model_name}')
    components += [trainer, evaluator, pusher]
    evaluators.append(evaluator)

  if len(evaluators) >= 2:  # skNet vs skResNet on every metric, for the report.
    components.append(ModelComparison(
        first_evaluation=evaluators[0].outputs['evaluation'],
        second_evaluation=evaluators[1].outputs['evaluation'],
        # Per-drawing outcomes of both models: paired intervals of the differences.
        first_embeddings=evaluators[0].outputs['embeddings'],
        second_embeddings=evaluators[1].outputs['embeddings']))

  if metadata_connection_config is None:
    metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path)
  return tfx_pipeline.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(config.beam_pipeline_args))
