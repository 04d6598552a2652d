"""Kubeflow: the compiled spec (components, image, parameters, GPUs, Beam, no local paths),
the CLI, the container recipe, and the submit helper's argument handling (offline: no
Kubeflow Pipelines endpoint here, so kfp.Client is replaced by a recorder)."""
import dataclasses
import json
import os
import re
import sys

import pytest
import yaml

from kubeflow import compile_kfp
from kubeflow import submit_kfp
from pipeline import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'registry.example.com/team/quickdraw-tfx:test'
OUTPUT_DIR = 'gs://qd-bucket/runs'
FULL_SOURCE = compile_kfp.GCS_PUBLIC_SOURCE
SMOKE_SOURCE = 'gs://qd-bucket/mirror/simplified'
GPU_TYPE, GPU_COUNT = 'NVIDIA_TESLA_T4', 2
BEAM_COMPONENTS = ('QuickDrawExampleGen', 'StatisticsGen', 'Transform')


def _cluster(beam_args, **changes):
  settings = dict(image=IMAGE, accelerator_type=GPU_TYPE, accelerator_count=GPU_COUNT,
                  gpu_cpu_limit=6.0, gpu_memory_limit_gb=24.0, cpu_limit=3.0,
                  memory_limit_gb=10.0, beam_pipeline_args=beam_args)
  settings.update(changes)
  return compile_kfp.ClusterConfig(**settings)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  """The full profile as YAML (Dataflow) and the smoke profile as JSON (Flink)."""
  folder = tmp_path_factory.mktemp('kfp')
  full = config_lib.profile('full', source=FULL_SOURCE, output_dir=OUTPUT_DIR)
  dataflow = compile_kfp.beam_pipeline_args('dataflow', OUTPUT_DIR, IMAGE, gcp_project='proj',
                                            region='europe-west4')
  compile_kfp.compile_pipeline(full, _cluster(dataflow), str(folder / 'full.yaml'))
  smoke = config_lib.profile('smoke', source=SMOKE_SOURCE, output_dir=OUTPUT_DIR, seed=7)
  flink = compile_kfp.beam_pipeline_args('flink', OUTPUT_DIR, IMAGE, endpoint='jm:8081')
  compile_kfp.compile_pipeline(smoke, _cluster(flink), str(folder / 'smoke.json'))
  return {'full': (full, dataflow, folder / 'full.yaml'),
          'smoke': (smoke, flink, folder / 'smoke.json')}


def _spec(path):
  """The PipelineSpec proto of a compiled file: YAML holds it, JSON holds a PipelineJob."""
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  with open(path) as f:
    if str(path).endswith('.json'):
      job = json_format.ParseDict(json.load(f), pipeline_spec_pb2.PipelineJob())
      return json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec),
                                   pipeline_spec_pb2.PipelineSpec())
    return json_format.ParseDict(yaml.safe_load(f), pipeline_spec_pb2.PipelineSpec())


def _executor(spec, task):
  label = spec.components[spec.root.dag.tasks[task].component_ref.name].executor_label
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                     pipeline_spec_pb2.PipelineDeploymentConfig())
  return deployment.executors[label].container


def _constant(spec, task, parameter):
  value = spec.root.dag.tasks[task].inputs.parameters[parameter].runtime_value.constant
  return value.WhichOneof('kind') and getattr(value, value.WhichOneof('kind'))


@pytest.mark.parametrize('name', ['full', 'smoke'])
def test_spec_holds_every_component_of_create_pipeline_and_the_image(compiled, name):
  from pipeline.pipeline import create_pipeline
  config, _, path = compiled[name]
  spec = _spec(path)
  # Kubeflow Pipelines runs no resolver: the baseline's is left out, with its change thresholds.
  ids = {c.id for c in create_pipeline(
      config.replace(max_accuracy_drop=None, max_map_drop=None),
      metadata_connection_config=object(), schema_file='gs://x/schema.pbtxt').components}
  # 5 shared components, Trainer + Evaluator + Pusher per model, ModelComparison.
  expected = {compile_kfp.task_name(i) for i in ids}
  assert set(spec.root.dag.tasks) == expected and len(expected) == 12
  assert not any('Resolver' in task for task in spec.root.dag.tasks)
  assert spec.pipeline_info.name == config.pipeline_name
  for task in expected:
    assert _executor(spec, task).image == IMAGE, task
    # Kubeflow Pipelines makes each task an Argo DAG task (and `<task>-driver`): Argo takes
    # letters, digits and '-' only, so Trainer.sknet would have the run rejected.
    assert compile_kfp.ARGO_NAME.match(task + '-driver'), task
    assert spec.root.dag.tasks[task].task_info.name == task
    for dependency in spec.root.dag.tasks[task].dependent_tasks:
      assert dependency in expected, (task, dependency)
    for artifact in spec.root.dag.tasks[task].inputs.artifacts.values():
      assert artifact.task_output_artifact.producer_task in expected, task
  # The run's artifacts go under the output directory, not the cluster's default root.
  assert spec.default_pipeline_root == f'{OUTPUT_DIR}/pipeline_root/{config.pipeline_name}'


def test_every_artifact_type_of_the_spec_imports_as_the_entrypoint_does_it(compiled):
  """TFX's Kubeflow V2 entrypoint recreates each input and output artifact by importing the
  class path its schema title names (kubeflow_v2_entrypoint_utils); a custom type whose title
  does not import fails the task before its executor starts."""
  from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint
  from tfx.utils import import_utils
  from kfp.pipeline_spec import pipeline_spec_pb2
  spec = _spec(compiled['full'][2])
  artifact_types = {}
  for component in spec.components.values():
    for definitions in (component.input_definitions, component.output_definitions):
      for artifact in definitions.artifacts.values():
        type_schema = pipeline_spec_pb2.ArtifactTypeSchema()
        type_schema.CopyFrom(artifact.artifact_type)
        artifact_types[entrypoint._retrieve_class_path(type_schema)] = type_schema
  custom = sorted(path for path in artifact_types if path.startswith('quickdraw.'))
  assert custom == ['quickdraw.Embeddings', 'quickdraw.ModelComparison',
                    'quickdraw.SamplingManifest']
  for path in artifact_types:
    artifact_class = import_utils.import_class_by_path(path)
    if path in custom:
      assert artifact_class.TYPE_NAME == path


# The executor each custom component's task runs: the stage's own executor module.
_CUSTOM_EXECUTORS = {
    'QuickDrawExampleGen': 'components.example_gen.executor.Executor',
    'EmbeddingEvaluator-sknet': 'components.evaluator.component.EmbeddingEvaluator_Executor',
    'Pusher-sknet': 'components.pusher.executor.Executor',
    'ModelComparison': 'components.model_comparison.component.ModelComparison_Executor',
}


@pytest.mark.parametrize('name', ['full', 'smoke'])
def test_every_executor_class_path_of_the_spec_imports_as_the_entrypoint_does_it(compiled, name):
  """TFX's Kubeflow V2 entrypoint imports each task's --executor_class_path; a path left behind
  by moved code fails the task before it starts."""
  from tfx.dsl.components.base import base_executor
  from tfx.utils import import_utils
  spec = _spec(compiled[name][2])
  paths = {}
  for task in spec.root.dag.tasks:
    args = list(_executor(spec, task).args)
    paths[task] = args[args.index('--executor_class_path') + 1]
    executor_class = import_utils.import_class_by_path(paths[task])
    assert issubclass(executor_class, base_executor.BaseExecutor), (task, paths[task])
  for task, path in _CUSTOM_EXECUTORS.items():
    assert paths[task] == path, task
  assert all(path.startswith(('components.', 'tfx.')) for path in paths.values()), paths


def test_blessing_thresholds_are_run_time_parameters_with_the_profile_defaults(compiled):
  config, _, path = compiled['full']
  spec = _spec(path)
  declared = spec.root.input_definitions.parameters
  assert set(declared) == set(compile_kfp.RUNTIME_PARAMETERS)
  for name in compile_kfp.RUNTIME_PARAMETERS:
    assert declared[name].default_value.number_value == pytest.approx(getattr(config, name))
    for model in config.models:
      task = spec.root.dag.tasks[f'EmbeddingEvaluator-{model}']
      assert task.inputs.parameters[name].component_input_parameter == name


def test_gpus_on_both_trainers_and_evaluators_cpu_and_memory_on_the_others(compiled):
  spec = _spec(compiled['full'][2])
  with_gpu = set()
  for task in spec.root.dag.tasks:
    resources = _executor(spec, task).resources
    if resources.accelerator.count:
      with_gpu.add(task)
      assert (resources.accelerator.type, resources.accelerator.count) == (GPU_TYPE, GPU_COUNT)
      assert (resources.cpu_limit, resources.memory_limit) == (6.0, 24.0)
    elif task != 'QuickDrawExampleGen':  # TFX 1.16 compiles ExampleGen without resources.
      assert (resources.cpu_limit, resources.memory_limit) == (3.0, 10.0), task
  assert with_gpu == {'Trainer-sknet', 'Trainer-skresnet', 'EmbeddingEvaluator-sknet',
                      'EmbeddingEvaluator-skresnet'}


def test_zero_accelerators_request_none(tmp_path):
  config = config_lib.profile('smoke', source=SMOKE_SOURCE, output_dir=OUTPUT_DIR)
  path = tmp_path / 'cpu.yaml'
  compile_kfp.compile_pipeline(config, _cluster((), accelerator_count=0), str(path))
  spec = _spec(path)
  assert not any(_executor(spec, t).resources.HasField('accelerator')
                 for t in spec.root.dag.tasks)


@pytest.mark.parametrize('name', ['full', 'smoke'])
def test_no_path_of_the_build_machine_leaks_into_the_spec(compiled, name):
  path = compiled[name][2]
  # Parsed, then dumped without line folding, so no path hides across a YAML line break.
  with open(path) as f:
    text = json.dumps(json.load(f) if str(path).endswith('.json') else yaml.safe_load(f))
  for local in (ROOT, os.path.expanduser('~'), sys.prefix, '.venv', os.getcwd()):
    assert local not in text, local
  spec = _spec(compiled[name][2])
  assert _constant(spec, 'ImportSchemaGen', 'schema_file') == compile_kfp.IMAGE_SCHEMA_FILE
  # Every absolute path left is inside the image or the Beam boot program.
  for path in re.findall(r'(?<![\w:/.])/[\w.-]+(?:/[\w.-]+)+', text):
    assert path.startswith(compile_kfp.IMAGE_PROJECT_DIR), path


@pytest.mark.parametrize('name', ['full', 'smoke'])
def test_components_carry_the_profile_and_source_chosen_at_compile_time(compiled, name):
  config, _, path = compiled[name]
  spec = _spec(path)
  assert _constant(spec, 'QuickDrawExampleGen', 'input_base') == config.source
  sampling = json.loads(_constant(spec, 'QuickDrawExampleGen', 'custom_config'))
  sampling = sampling['custom_config']['value']
  assert (sampling['num_categories'], sampling['train_per_category'],
          sampling['test_per_category'], sampling['seed']) == (
              config.num_categories, config.train_per_category, config.test_per_category,
              config.seed)
  for model in config.models:
    training = json.loads(_constant(spec, f'Trainer-{model}', 'custom_config'))
    assert (training['epochs'], training['batch_size'], training['model_name']) == (
        config.training[model].epochs, config.training[model].batch_size, model)
    pushed = json.loads(_constant(spec, f'Pusher-{model}', 'custom_config'))
    assert pushed['data']['source'] == config.source
    destination = json.loads(_constant(spec, f'Pusher-{model}', 'push_destination'))
    assert destination['filesystem']['base_directory'] == f'{OUTPUT_DIR}/registry/{model}'
    evaluator = spec.root.dag.tasks[f'EmbeddingEvaluator-{model}'].inputs.parameters
    assert evaluator['train_eval_max_examples'].runtime_value.constant.number_value == (
        config.train_eval_max_examples)


def test_json_is_a_pipeline_job_with_the_root_and_parameter_values(compiled):
  config, _, path = compiled['smoke']
  job = json.loads(path.read_text())
  assert job['runtimeConfig']['gcsOutputDirectory'] == (
      f'{OUTPUT_DIR}/pipeline_root/{config.pipeline_name}')
  assert job['runtimeConfig']['parameterValues'] == {
      'min_map': config.min_map, 'min_test_accuracy': config.min_test_accuracy}


@pytest.mark.parametrize('name', ['full', 'smoke'])
def test_beam_stages_get_the_distributed_runner_arguments(compiled, name):
  _, beam_args, path = compiled[name]
  spec = _spec(path)
  for task in BEAM_COMPONENTS:
    args = list(_executor(spec, task).args)
    assert args[-len(beam_args):] == list(beam_args), task
  driver = _executor(spec, 'QuickDrawExampleGen').lifecycle.pre_cache_check
  assert list(driver.args[-len(beam_args):]) == list(beam_args)


def test_beam_runner_defaults_and_overrides():
  dataflow = compile_kfp.beam_pipeline_args('dataflow', 'gs://b/qd/', IMAGE, gcp_project='p',
                                            region='r', extra=['--max_num_workers=5'])
  assert dataflow[0] == '--runner=DataflowRunner'
  assert '--temp_location=gs://b/qd/tmp/beam' in dataflow
  assert f'--sdk_container_image={IMAGE}' in dataflow
  assert dataflow[-1] == '--max_num_workers=5'  # Last wins in Beam's argument parser.
  spark = compile_kfp.beam_pipeline_args('spark', 'gs://b', IMAGE, endpoint='spark://m:7077')
  assert spark[:2] == ('--runner=SparkRunner', '--spark_master_url=spark://m:7077')
  assert '--environment_type=EXTERNAL' in spark
  assert compile_kfp.beam_pipeline_args('direct', 'gs://b', IMAGE, direct_workers=3) == (
      '--direct_running_mode=multi_processing', '--direct_num_workers=3')
  with pytest.raises(compile_kfp.UsageError, match='--gcp-project and --region'):
    compile_kfp.beam_pipeline_args('dataflow', 'gs://b', IMAGE, gcp_project='p')
  with pytest.raises(compile_kfp.UsageError, match='--beam-endpoint'):
    compile_kfp.beam_pipeline_args('flink', 'gs://b', IMAGE)


def _cli_args(tmp_path, *extra):
  return ['compile-kfp', '--image', IMAGE, '--output-dir', OUTPUT_DIR, '--profile', 'smoke',
          '--beam-runner', 'direct', '--output-file', str(tmp_path / 'cli.yaml'), *extra]


def test_cli_compile_kfp_writes_the_spec(tmp_path, capsys):
  from pipeline import cli
  assert cli.main(_cli_args(tmp_path, '--accelerator-type', 'NVIDIA_L4',
                            '--accelerator-count', '1')) == 0
  spec = _spec(tmp_path / 'cli.yaml')
  assert _executor(spec, 'Trainer-sknet').resources.accelerator.type == 'NVIDIA_L4'
  assert _constant(spec, 'QuickDrawExampleGen', 'input_base') == FULL_SOURCE
  assert 'Trainer-skresnet' in capsys.readouterr().out


@pytest.mark.parametrize('extra, message', [
    (['--output-dir', '/tmp/local'], 'not a URI that pods can reach'),
    (['--source', config_lib.PUBLIC_BUCKET], 'https:// does not allow'),
    (['--source', ROOT], 'not a URI that pods can reach'),
    (['--beam-runner', 'dataflow'], '--gcp-project and --region'),
    (['--output-file', 'spec.txt'], 'must end in .yaml'),
    (['--accelerator-count', '-1'], '--accelerator-count must be'),
    (['--memory-limit', '0'], 'limits must be positive'),
])
def test_cli_compile_kfp_usage_errors_exit_2(tmp_path, capsys, extra, message):
  from pipeline import cli
  assert cli.main(_cli_args(tmp_path) + extra) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / 'cli.yaml').exists()


def test_cli_compile_kfp_requires_the_image(tmp_path):
  from pipeline import cli
  with pytest.raises(SystemExit) as usage:
    cli.main(['compile-kfp', '--output-dir', OUTPUT_DIR])
  assert usage.value.code == 2


def _pins(path):
  pins = {}
  with open(path) as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line:
        name, version = line.split('==')
        pins[re.sub(r'[-_.]+', '-', name).lower()] = version
  return pins


def test_dockerfile_installs_every_pin_of_the_constraints():
  with open(os.path.join(ROOT, 'kubeflow', 'Dockerfile')) as f:
    recipe = f.read().replace('\\\n', ' ')
  # The repository's constraints.txt is copied in and installed as requirements (-r): every
  # pin, exactly, not only the ones setup.py pulls in.
  copied = re.findall(r'^COPY\s+(\S+)\s+(\S+)\s*$', recipe, re.M)
  assert ('constraints.txt', '.') in copied
  workdir = re.findall(r'^WORKDIR\s+(\S+)', recipe, re.M)
  assert workdir[-1] == compile_kfp.IMAGE_PROJECT_DIR
  installs = [line for line in recipe.splitlines()
              if line.startswith('RUN') and 'pip install' in line]
  assert any(re.search(r'pip install .*-r constraints\.txt', line) for line in installs)
  # Nothing else the recipe installs contradicts a pin, and the project comes without
  # re-resolving its dependencies.
  pins = _pins(os.path.join(ROOT, 'constraints.txt'))
  assert pins['tensorflow'] == '2.16.2' and pins['tfx'] == '1.16.0' and len(pins) > 200
  for name, version in re.findall(r"([A-Za-z][\w.-]*)(?:\[[\w,-]+\])?==([\w.]+)",
                                  ' '.join(installs)):
    normalized = re.sub(r'[-_.]+', '-', name).lower()
    if normalized in pins:
      assert pins[normalized] == version, name
  assert any('--no-deps .' in line for line in installs)
  # The Python of the image is the one setup.py allows.
  with open(os.path.join(ROOT, 'setup.py')) as f:
    assert "'>=3.10,<3.11'" in f.read()
  assert 'python3.10 -m venv' in recipe and 'beam_python3.10_sdk:' + pins['apache-beam'] in recipe


# Submit helper: argument handling only (no Kubeflow Pipelines endpoint on this machine).

class _RecordingClient:
  calls = []

  def __init__(self, host=None, namespace='kubeflow'):
    self.host = host

  def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
    _RecordingClient.calls.append(dict(kwargs, pipeline_file=pipeline_file, host=self.host))

    class Result:
      run_id = 'run-1'
    return Result()


def test_submit_sends_typed_parameters(compiled, monkeypatch, capsys):
  import kfp
  from pipeline import cli
  monkeypatch.setattr(kfp, 'Client', _RecordingClient)
  _RecordingClient.calls.clear()
  path = str(compiled['full'][2])
  assert cli.main(['submit-kfp', '--spec', path, '--host', 'http://kfp.example:8888',
                   '--param', 'min_map=0.35', '--experiment', 'qd']) == 0
  # Without pipeline_root Kubeflow Pipelines would use its minio:// default, which TFX's
  # file I/O cannot write: the spec's root goes with the run.
  assert _RecordingClient.calls == [{
      'pipeline_file': path, 'host': 'http://kfp.example:8888', 'arguments': {'min_map': 0.35},
      'run_name': None, 'experiment_name': 'qd', 'namespace': None,
      'pipeline_root': f'{OUTPUT_DIR}/pipeline_root/quickdraw-tfx-full'}]
  assert 'run-1' in capsys.readouterr().out


def test_submit_pipeline_root_can_be_overridden_but_not_to_minio(compiled, monkeypatch, capsys):
  import kfp
  monkeypatch.setattr(kfp, 'Client', _RecordingClient)
  _RecordingClient.calls.clear()
  path = str(compiled['full'][2])
  assert submit_kfp.main(['--spec', path, '--pipeline-root', 'gs://other/root']) == 0
  assert _RecordingClient.calls[-1]['pipeline_root'] == 'gs://other/root'
  assert submit_kfp.main(['--spec', path, '--pipeline-root',
                          'minio://mlpipeline/v2/artifacts']) == 2
  assert 'pipeline root' in capsys.readouterr().err and len(_RecordingClient.calls) == 1


def test_warm_start_is_refused_at_compile_time(tmp_path):
  smoke = config_lib.profile('smoke', source=SMOKE_SOURCE, output_dir=OUTPUT_DIR)
  training = dict(smoke.training)
  training['skresnet'] = dataclasses.replace(training['skresnet'], warm_start=True)
  with pytest.raises(compile_kfp.UsageError, match='warm_start is set for skresnet'):
    compile_kfp.compile_pipeline(smoke.replace(training=training), _cluster(()),
                                 str(tmp_path / 'warm.yaml'))
  assert not (tmp_path / 'warm.yaml').exists()


@pytest.mark.parametrize('param, message', [
    ('min_mAP=0.3', 'no such parameter'),
    ('min_map=high', 'not a valid NUMBER_DOUBLE'),
    ('min_map', 'NAME=VALUE'),
])
def test_submit_rejects_bad_parameters_before_sending(compiled, monkeypatch, capsys, param,
                                                      message):
  import kfp
  monkeypatch.setattr(kfp, 'Client', _RecordingClient)
  _RecordingClient.calls.clear()
  assert submit_kfp.main(['--spec', str(compiled['full'][2]), '--param', param]) == 2
  assert message in capsys.readouterr().err and not _RecordingClient.calls


def test_submit_wants_the_yaml_spec(compiled, tmp_path, capsys):
  assert submit_kfp.main(['--spec', str(compiled['smoke'][2])]) == 2
  assert 'takes the .yaml spec' in capsys.readouterr().err
  assert submit_kfp.main(['--spec', str(tmp_path / 'absent.yaml')]) == 2
  assert 'no such file' in capsys.readouterr().err
