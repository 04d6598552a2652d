"""Warm start in the DAG: a resolver per model, off by default, feeding the Trainer's base_model."""
import dataclasses

from tfx.dsl.compiler import compiler
from tfx.types import standard_artifacts

from components.resolvers import LatestOrNoneStrategy
from pipeline import config as config_lib
from pipeline.pipeline import create_pipeline


def _config(tmp_path, warm_models=()):
  config = config_lib.profile('smoke', source=str(tmp_path), output_dir=str(tmp_path))
  training = {name: dataclasses.replace(t, warm_start=name in warm_models)
              for name, t in config.training.items()}
  return config.replace(training=training)


def _model(artifact_id):
  model = standard_artifacts.Model()
  model.id = artifact_id
  return model


def test_strategy_takes_the_newest_model_and_nothing_when_there_is_none():
  strategy = LatestOrNoneStrategy()
  assert strategy.resolve_artifacts(None, {'model': []}) == {'model': []}
  resolved = strategy.resolve_artifacts(None, {'model': [_model(3), _model(9), _model(5)]})
  assert [a.id for a in resolved['model']] == [9]


def test_no_resolver_unless_asked(tmp_path):
  ids = [c.id for c in create_pipeline(_config(tmp_path)).components]
  assert not [i for i in ids if i.startswith('LatestModelResolver')]


def test_each_trainer_resolves_its_own_latest_model(tmp_path):
  pipeline = create_pipeline(_config(tmp_path, warm_models=('skresnet',)))
  ids = [c.id for c in pipeline.components]
  assert 'LatestModelResolver.skresnet' in ids and 'LatestModelResolver.sknet' not in ids
  compiled = compiler.Compiler().compile(pipeline)
  nodes = {n.pipeline_node.node_info.id: n.pipeline_node for n in compiled.nodes}
  # The resolver reads models produced by Trainer.skresnet (not skNet's), output key 'model'.
  resolver = nodes['LatestModelResolver.skresnet'].inputs
  query = resolver.inputs['_Trainer.skresnet.model'].channels[0]
  node_contexts = [q.name.field_value.string_value for q in query.context_queries
                   if q.type.name == 'node']
  assert node_contexts == [f'{pipeline.pipeline_info.pipeline_name}.Trainer.skresnet']
  assert query.output_key == 'model' and query.artifact_query.type.name == 'Model'
  ops = [n.op_node.op_type for graph in resolver.input_graphs.values()
         for n in graph.nodes.values() if n.HasField('op_node')]
  assert ops == ['components.resolvers.LatestOrNoneStrategy']
  # Its output is Trainer.skresnet's base_model; skNet's Trainer has none.
  base = nodes['Trainer.skresnet'].inputs.inputs['base_model'].channels[0]
  assert base.producer_node_query.id == 'LatestModelResolver.skresnet'
  assert 'base_model' not in nodes['Trainer.sknet'].inputs.inputs
