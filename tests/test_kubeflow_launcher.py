"""kubeflow/local_launcher.py on small hand-written specs (no TFX): order, wiring, parameters
and their types, placeholders, the image's environment, failures and what Kubeflow refuses."""
import copy
import json
import os
import re
import sys

import pytest

from kubeflow import compile_kfp
from kubeflow import kfp_driver
from kubeflow import local_launcher
from tests.conftest import ROOT

# A container that records what it was given: its executor input, working directory and
# environment, into its output artifact, and reports metadata in its ExecutorOutput.
_SCRIPT = '''
import json, os, sys
executor_input = json.loads(sys.argv[1])
outputs = executor_input["outputs"]
seen = {"input": executor_input, "cwd": os.getcwd(), "env": dict(os.environ),
        "label": sys.argv[2], "upstream": None}
for key, artifacts in executor_input["inputs"].get("artifacts", {}).items():
  with open(os.path.join(artifacts["artifacts"][0]["uri"], "seen.json")) as f:
    seen["upstream"] = json.load(f)["label"]
uri = outputs["artifacts"]["out"]["artifacts"][0]["uri"]
os.makedirs(uri, exist_ok=True)
with open(os.path.join(uri, "seen.json"), "w") as f:
  json.dump(seen, f)
os.makedirs(os.path.dirname(outputs["outputFile"]), exist_ok=True)
with open(outputs["outputFile"], "w") as f:
  json.dump({"artifacts": {"out": {"artifacts": [{"uri": uri, "metadata": {
      "count": 3, "blessed": True, "label": sys.argv[2]}}]}}}, f)
sys.exit(int(executor_input["inputs"]["parameterValues"].get("exit_code", 0)))
'''
_ARTIFACT = {'artifactType': {'instanceSchema': 'title: tfx.Examples\ntype: object\n'}}


def _spec():
  """'make' -> 'use'; 'use' takes the run-time parameter min_map and typed constants."""
  def component(name, inputs):
    return {'executorLabel': f'{name}_executor',
            'inputDefinitions': {'artifacts': inputs, 'parameters': {
                'label': {'parameterType': 'STRING'},
                'min_map': {'parameterType': 'NUMBER_DOUBLE'},
                'size': {'parameterType': 'NUMBER_INTEGER'},
                'exit_code': {'parameterType': 'NUMBER_INTEGER', 'defaultValue': 0.0,
                              'isOptional': True}}},
            'outputDefinitions': {'artifacts': {'out': _ARTIFACT}}}

  def task(name, constant_label, **extra):
    return dict({'componentRef': {'name': name}, 'taskInfo': {'name': name}, 'inputs': {
        'parameters': {'label': {'runtimeValue': {'constant': constant_label}},
                       'min_map': {'componentInputParameter': 'min_map'},
                       'size': {'runtimeValue': {'constant': 128.0}}}}}, **extra)

  container = {'image': 'img', 'command': ['python', '-c', _SCRIPT],
               'args': ['{{$}}', "{{$.inputs.parameters['label']}}"]}
  use = task('use', 7.0, dependentTasks=['make'])
  use['inputs']['artifacts'] = {'examples': {'taskOutputArtifact': {
      'producerTask': 'make', 'outputArtifactKey': 'out'}}}
  return {
      'pipelineInfo': {'name': 'fake'}, 'schemaVersion': '2.1.0', 'sdkVersion': 'test',
      'components': {'make': component('make', {}), 'use': component('use', {'examples':
                                                                              _ARTIFACT})},
      'deploymentSpec': {'executors': {'make_executor': {'container': container},
                                       'use_executor': {'container': container}}},
      'root': {'inputDefinitions': {'parameters': {'min_map': {
          'parameterType': 'NUMBER_DOUBLE', 'defaultValue': 0.3, 'isOptional': True}}},
               'dag': {'tasks': {'use': use, 'make': task('make', 'first')}}}}


def _seen(run, task):
  with open(os.path.join(run.tasks[task].outputs['out']['uri'], 'seen.json')) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def fake_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp('launcher')
  run = local_launcher.Run(_spec(), str(folder / 'root'), str(folder / 'work'),
                           {'min_map': 0.25}, run_id='run-1', log=lambda line: None)
  run.run()
  return run


def test_tasks_run_in_dependency_order_with_outputs_under_the_run(fake_run):
  assert list(fake_run.tasks) == ['make', 'use']
  uri = fake_run.tasks['use'].outputs['out']['uri']
  assert uri == f'{fake_run.root}/fake/run-1/use/out'
  # The downstream task read the upstream one's output through the URI it was given.
  assert _seen(fake_run, 'use')['upstream'] == 'first'


def test_upstream_artifact_arrives_with_the_reported_metadata(fake_run):
  given = _seen(fake_run, 'use')['input']['inputs']['artifacts']['examples']['artifacts'][0]
  made = fake_run.tasks['make'].outputs['out']
  assert given['uri'] == made['uri'] and given['name'] == made['name'] == '1'
  assert given['type']['instanceSchema'].startswith('title: tfx.Examples')
  # As Kubeflow's ML Metadata returns them: numbers as doubles, booleans as 0/1.
  assert given['metadata'] == {'count': 3.0, 'blessed': 1.0, 'label': 'first',
                               'display_name': 'out'}


def test_parameters_are_typed_as_declared_and_fill_the_placeholders(fake_run):
  seen = _seen(fake_run, 'use')
  parameters = seen['input']['inputs']['parameterValues']
  assert parameters == {'label': '7', 'min_map': 0.25, 'size': 128.0, 'exit_code': 0.0}
  assert seen['label'] == '7'  # {{$.inputs.parameters['label']}}, as text.
  command = fake_run.tasks['use'].command
  assert command[:3] == ['python', '-c', _SCRIPT]
  assert json.loads(command[3]) == seen['input']


def test_the_run_time_parameter_default_applies_when_not_given(tmp_path):
  run = local_launcher.Run(_spec(), str(tmp_path / 'root'), str(tmp_path / 'work'),
                           log=lambda line: None)
  run.run(only=['make'])
  assert list(run.tasks) == ['make']
  assert _seen(run, 'make')['input']['inputs']['parameterValues']['min_map'] == 0.3


def test_tasks_run_in_the_images_working_directory_and_environment(fake_run):
  seen = _seen(fake_run, 'make')
  env, workdir = local_launcher.image_environment()
  assert seen['cwd'] == workdir == ROOT
  with open(local_launcher.DOCKERFILE) as f:
    declared = set(re.findall(r'^\s*(?:ENV\s+)?([A-Z_]+)=', f.read(), re.M))
  assert {'TF_USE_LEGACY_KERAS', 'VIRTUAL_ENV', 'PATH'} <= declared
  # Only the image's variables (and HOME) reach the task; the Dockerfile sets no PYTHONPATH.
  assert set(env) == declared | {'HOME'}
  task_env = {k: v for k, v in seen['env'].items() if k in env}
  assert task_env == env and 'PYTHONPATH' not in seen['env']
  assert seen['env']['TF_USE_LEGACY_KERAS'] == '1'
  assert env['VIRTUAL_ENV'] == sys.prefix
  assert env['PATH'].startswith(os.path.join(sys.prefix, 'bin') + os.pathsep)


def test_vertex_layout_runs_the_pre_cache_check_hook_first(tmp_path):
  spec = _spec()
  hook = {'command': ['python', '-c', 'import json, os, sys; o = json.loads(sys.argv[1])'
                      '["outputs"]["outputFile"]; os.makedirs(os.path.dirname(o), '
                      'exist_ok=True); open(o, "w").write("{}")'], 'args': ['{{$}}']}
  spec['deploymentSpec']['executors']['make_executor']['container']['lifecycle'] = {
      'preCacheCheck': hook}
  run = local_launcher.Run(spec, str(tmp_path / 'root'), str(tmp_path / 'work'),
                           platform='vertex', run_id='job', log=lambda line: None)
  run.run(only=['make'])
  assert run.tasks['make'].outputs['out']['uri'] == f'{run.root}/0/job/make_1/out'
  with open(os.path.join(run.tasks['make'].folder, 'log.txt')) as f:
    steps = re.findall(r'^--- (\S+):', f.read(), re.M)
  assert steps == ['preCacheCheck', 'executor']


def test_a_failing_task_stops_the_run_naming_it_and_its_log(tmp_path):
  spec = _spec()
  spec['root']['dag']['tasks']['make']['inputs']['parameters']['exit_code'] = {
      'runtimeValue': {'constant': 3.0}}
  run = local_launcher.Run(spec, str(tmp_path / 'root'), str(tmp_path / 'work'),
                           log=lambda line: None)
  with pytest.raises(local_launcher.LauncherError, match='task make: executor exited with 3'):
    run.run()
  assert 'use' not in run.tasks


def _make_parameters(spec):
  return spec['root']['dag']['tasks']['make']['inputs']['parameters']


@pytest.mark.parametrize('change, message', [
    (lambda s: _make_parameters(s).update(size={'runtimeValue': {'constant': 0.5}}),
     'size is NUMBER_INTEGER'),
    (lambda s: _make_parameters(s).update(min_map={'runtimeValue': {'constant': 'high'}}),
     'min_map expects NUMBER_DOUBLE'),
    (lambda s: _make_parameters(s).pop('size'), 'size .NUMBER_INTEGER. has no value'),
])
def test_parameters_that_do_not_fit_their_declared_type_are_refused(tmp_path, change, message):
  spec = _spec()
  change(spec)
  run = local_launcher.Run(spec, str(tmp_path / 'root'), str(tmp_path / 'work'),
                           log=lambda line: None)
  with pytest.raises(local_launcher.LauncherError, match=f'task make: parameter {message}'):
    run.run()
  assert not run.tasks


def test_what_kubeflow_refuses_is_refused_before_any_task_runs(tmp_path):
  dotted = _spec()
  tasks = dotted['root']['dag']['tasks']
  tasks['Trainer.sknet'] = tasks.pop('make')
  with pytest.raises(local_launcher.LauncherError, match='not a valid Argo task name'):
    local_launcher.Run(dotted, str(tmp_path), str(tmp_path))
  resolver = _spec()
  resolver['deploymentSpec']['executors']['make_executor'] = {'resolver': {}}
  with pytest.raises(local_launcher.LauncherError, match='task make: a resolver executor'):
    local_launcher.Run(resolver, str(tmp_path), str(tmp_path))
  with pytest.raises(local_launcher.LauncherError, match='no run-time parameter min_mAP'):
    local_launcher.Run(_spec(), str(tmp_path), str(tmp_path), {'min_mAP': 0.1})
  assert not os.listdir(tmp_path)


def test_task_order_includes_upstream_tasks_only_when_asked():
  spec = _spec()
  assert kfp_driver.task_order(spec) == ['make', 'use']
  assert kfp_driver.task_order(spec, ['use']) == ['make', 'use']
  cyclic = copy.deepcopy(spec)
  cyclic['root']['dag']['tasks']['make']['dependentTasks'] = ['use']
  with pytest.raises(local_launcher.LauncherError, match='dependency cycle'):
    kfp_driver.task_order(cyclic)
  with pytest.raises(local_launcher.LauncherError, match='no task Pusher'):
    kfp_driver.task_order(spec, ['Pusher'])


def test_argo_name_rule_matches_the_compiled_names():
  assert compile_kfp.task_name('Trainer.sknet') == 'Trainer-sknet'
  assert compile_kfp.ARGO_NAME.match('EmbeddingEvaluator-skresnet')
  assert not compile_kfp.ARGO_NAME.match('Trainer.sknet')
