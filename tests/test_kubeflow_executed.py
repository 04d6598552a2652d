"""The compiled smoke spec executed as Kubeflow Pipelines would run it (kubeflow/local_launcher.py):
every task's own container command from the spec's deploymentSpec, in a subprocess with the
image's environment, outputs wired into the next tasks' inputs, run-time parameters passed.
It must end with both models in the registry and the same metrics as the local run."""
import json
import os

import pytest
import tensorflow as tf
import yaml

from components.evaluator import outputs as evaluation_outputs
from domain import registry_store
from kubeflow import compile_kfp
from kubeflow import kfp_driver
from kubeflow import local_launcher
from pipeline import results

pytestmark = pytest.mark.e2e

# Not the configuration's threshold (the spec's default), so its arrival shows the run-time
# parameter was passed; low enough that both models are still blessed.
MIN_MAP = 0.001
# Run-dependent entries of the Evaluator's metrics; everything else must be equal.
_RUN_DEPENDENT = ('evaluation_seconds', 'thresholds', 'blessing')


@pytest.fixture(scope='module')
def executed(smoke_run, tmp_path_factory):
  """The smoke run's configuration (source, seed) compiled and executed; and the local run."""
  config, first, _ = smoke_run
  local = config.replace(output_dir=str(tmp_path_factory.mktemp('kfp_executed')))
  spec_file = os.path.join(local.output_dir, 'kfp', f'{local.pipeline_name}.yaml')
  spec = local_launcher.compile_local(local, spec_file)
  run = local_launcher.Run(spec, spec['defaultPipelineRoot'],
                           os.path.join(local.output_dir, 'local_launcher'), {'min_map': MIN_MAP})
  run.run()
  store = results.open_store(config.metadata_path)
  return {'config': local, 'spec': spec, 'spec_file': spec_file, 'run': run,
          'local': results.node_runs(store, config.pipeline_name, first)}


def test_every_task_ran_its_own_container_command_after_its_dependencies(executed):
  spec, run = executed['spec'], executed['run']
  tasks = spec['root']['dag']['tasks']
  assert list(run.tasks) == kfp_driver.task_order(spec) and set(run.tasks) == set(tasks)
  position = {name: i for i, name in enumerate(run.tasks)}
  for name, task in tasks.items():
    for dependency in task.get('dependentTasks', []):
      assert position[dependency] < position[name], (dependency, name)
    label = spec['components'][task['componentRef']['name']]['executorLabel']
    container = spec['deploymentSpec']['executors'][label]['container']
    written = container['command'] + container['args']
    ran = run.tasks[name].command
    # TFX's Kubeflow V2 entrypoint, word for word; only the executor input was filled in.
    assert ran[:3] == ['python', '-m', 'tfx.orchestration.kubeflow.v2.container.'
                       'kubeflow_v2_run_executor'], name
    assert len(ran) == len(written), name
    for word_ran, word_written in zip(ran, written):
      if word_written == '{{$}}':
        with open(os.path.join(run.tasks[name].folder, 'executor_input.json')) as f:
          assert json.loads(word_ran) == json.load(f), name
      else:
        assert word_ran == word_written, name


def test_each_task_got_its_producers_outputs_and_the_run_time_parameters(executed):
  run, config = executed['run'], executed['config']
  for name, task in run.tasks.items():
    with open(os.path.join(task.folder, 'executor_input.json')) as f:
      given = json.load(f)
    for key, artifacts in given['inputs'].get('artifacts', {}).items():
      source = executed['spec']['root']['dag']['tasks'][name]['inputs']['artifacts'][key]
      producer = source['taskOutputArtifact']
      made = run.tasks[producer['producerTask']].outputs[producer['outputArtifactKey']]
      assert artifacts['artifacts'][0]['uri'] == made['uri'], (name, key)
    for key, artifact in task.outputs.items():
      assert artifact['uri'].startswith(f'{config.pipeline_root}/{config.pipeline_name}/'
                                        f'{run.run_id}/{name}/'), (name, key)
  for model in config.models:
    evaluator = compile_kfp.task_name(f'EmbeddingEvaluator.{model}')
    metrics = evaluation_outputs.read_metrics(run.tasks[evaluator].outputs['evaluation']['uri'])
    assert metrics['thresholds']['min_map'] == MIN_MAP
    assert metrics['thresholds']['min_test_accuracy'] == config.min_test_accuracy


@pytest.mark.parametrize('model', ['sknet', 'skresnet'])
def test_both_models_are_pushed_to_the_registry_under_the_output_directory(executed, model):
  run, config = executed['run'], executed['config']
  pushed = run.tasks[compile_kfp.task_name(f'Pusher.{model}')].outputs['pushed_model']
  assert pushed['metadata']['pushed'] == 1.0
  destination = pushed['metadata']['pushed_destination']
  assert os.path.dirname(destination) == os.path.join(config.registry_dir, model)
  assert tf.io.gfile.exists(os.path.join(destination, 'saved_model.pb'))
  card = registry_store.read_card(destination)
  assert card['model_name'] == model and card['data']['seed'] == config.seed
  trainer = run.tasks[compile_kfp.task_name(f'Trainer.{model}')]
  assert card['lineage']['model_artifact']['uri'] == trainer.outputs['model']['uri']


@pytest.mark.parametrize('model', ['sknet', 'skresnet'])
def test_evaluation_equals_the_local_runs_for_the_same_seed(executed, model):
  run, local = executed['run'], executed['local']
  evaluator = f'EmbeddingEvaluator.{model}'
  executed_metrics = evaluation_outputs.read_metrics(
      run.tasks[compile_kfp.task_name(evaluator)].outputs['evaluation']['uri'])
  local_metrics = evaluation_outputs.read_metrics(local[evaluator].outputs['evaluation'][0].uri)
  for key in _RUN_DEPENDENT:
    executed_metrics.pop(key)
    local_metrics.pop(key)
  assert executed_metrics == local_metrics


def test_the_local_spec_differs_from_a_cluster_spec_in_its_paths_only(executed, tmp_path):
  """The same profile compiled for a cluster: equal once the paths are swapped."""
  config = executed['config']
  cluster_config = config.replace(output_dir='gs://bucket/qd', source='gs://bucket/source')
  cluster = compile_kfp.ClusterConfig(image='quickdraw-tfx:local',
                                      beam_pipeline_args=tuple(config.beam_pipeline_args))
  compile_kfp.compile_pipeline(cluster_config, cluster, str(tmp_path / 'cluster.yaml'))
  with open(tmp_path / 'cluster.yaml') as f:
    text = json.dumps(yaml.safe_load(f))  # Unfolded: no path split across lines.
  local_schema = os.path.join(local_launcher.ROOT, 'schema', 'schema.pbtxt')
  for cluster_path, local_path in ((compile_kfp.IMAGE_SCHEMA_FILE, local_schema),
                                   ('gs://bucket/qd', config.output_dir),
                                   ('gs://bucket/source', config.source)):
    text = text.replace(cluster_path, local_path)
  with open(executed['spec_file']) as f:
    assert json.loads(text) == yaml.safe_load(f)
