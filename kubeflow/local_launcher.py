"""Runs a compiled Kubeflow spec on this machine, task by task, as Kubeflow Pipelines would.

  python -m kubeflow.local_launcher --profile smoke --output-dir outputs/kfp-local
  python -m kubeflow.local_launcher --profile smoke --output-dir outputs/kfp-local \\
      --param min_map=0.05 --tasks Transform --platform vertex

The profile is compiled by compile-kfp's own code, with this machine's paths (output directory,
source, schema) and the profile's in-process Beam settings. Then, for each task in dependency
order, this does what the Kubeflow Pipelines v2 driver and launcher do for a container task:
resolves its parameters (the spec's constants, the run-time parameters from --param or the
spec's defaults) and checks them against the component's declared types; provisions its
output artifacts under <pipeline root>/<pipeline name>/<run id>/<task>/<output>; hands it
its upstream tasks' output artifacts with the metadata their executors reported; fills the
placeholders ({{$}}, ...) into the command and arguments of the spec's deploymentSpec; runs
that command in a subprocess with the image's environment (kubeflow/Dockerfile's ENV and
WORKDIR, the checkout standing in for the image's project folder); and reads the
ExecutorOutput the executor wrote. `--platform vertex` lays out outputs as Vertex AI Pipelines
does and also runs a container's preCacheCheck hook (ExampleGen's driver), which Kubeflow
Pipelines' backend does not run.

Not done here: building or pulling the image, pods, resource limits and GPUs, KFP's cache and
ML Metadata (artifacts get sequential ids), retries. Resolver and importer tasks are refused:
the project's specs have none (compile-kfp refuses warm start).
"""
import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kubeflow import compile_kfp
from kubeflow import submit_kfp
from models import legacy_keras
from pipeline import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, 'kubeflow', 'Dockerfile')
# The image's virtualenv (Dockerfile ENV VIRTUAL_ENV); here, the one this runs in.
IMAGE_VENV = '/opt/venv'
PLATFORMS = ('kubeflow', 'vertex')
# Kubeflow Pipelines' launcher: ExecutorOutput goes to this file inside the pod.
KFP_OUTPUT_FILE = os.path.join('kfp_outputs', 'output_metadata.json')
_NUMBER_TYPES = ('NUMBER_DOUBLE', 'NUMBER_INTEGER')


class LauncherError(RuntimeError):
  """The spec cannot run as written, or a task failed; the message names the task."""


@dataclasses.dataclass
class TaskRun:
  name: str
  command: List[str]  # As run, placeholders filled in.
  seconds: float
  outputs: Dict[str, Dict[str, Any]]  # Output key -> RuntimeArtifact (JSON) as recorded.
  folder: str  # executor_input.json, log.txt, the ExecutorOutput.


def image_environment(dockerfile: str = DOCKERFILE) -> Tuple[Dict[str, str], str]:
  """(environment, working directory) of the image's last stage: its ENV lines with the image's
  venv and project folder mapped to this machine's, and $PATH to this machine's PATH. Nothing
  else from this process's environment but HOME."""
  with open(dockerfile) as f:
    text = f.read().replace('\\\n', ' ')
  stage = re.split(r'^FROM\s', text, flags=re.M)[-1]
  env, workdir = {}, '/'
  for line in stage.splitlines():
    keyword, _, rest = line.strip().partition(' ')
    if keyword == 'ENV':
      for assignment in shlex.split(rest):
        name, _, value = assignment.partition('=')
        env[name] = value
    elif keyword == 'WORKDIR':
      workdir = rest.strip()
  mapped = {}
  for name, value in env.items():
    value = value.replace('${PATH}', '$PATH').replace('$PATH', os.environ.get('PATH', ''))
    value = value.replace(IMAGE_VENV, sys.prefix)
    mapped[name] = value.replace(compile_kfp.IMAGE_PROJECT_DIR, ROOT)
  mapped['HOME'] = os.path.expanduser('~')
  return mapped, workdir.replace(compile_kfp.IMAGE_PROJECT_DIR, ROOT)


def read_spec(path: str) -> Dict[str, Any]:
  """The PipelineSpec of a compiled .yaml (PipelineSpec) or .json (PipelineJob), checked
  against the proto."""
  import yaml  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    document = json.load(f) if path.endswith('.json') else yaml.safe_load(f)
  spec = document.get('pipelineSpec', document)
  json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
  return spec


def task_order(spec: Dict[str, Any], only: Sequence[str] = ()) -> List[str]:
  """Task names in dependency order (ties by name); with `only`, those and their upstream."""
  tasks = spec['root']['dag']['tasks']
  unknown = sorted(set(only) - set(tasks))
  if unknown:
    raise LauncherError(f'no task {", ".join(unknown)} in the spec; it has {", ".join(tasks)}')
  wanted, stack = set(), list(only or tasks)
  while stack:
    name = stack.pop()
    if name not in wanted:
      wanted.add(name)
      stack += tasks[name].get('dependentTasks', [])
  order, done = [], set()
  while len(order) < len(wanted):
    ready = sorted(n for n in wanted - done if set(tasks[n].get('dependentTasks', [])) <= done)
    if not ready:
      raise LauncherError(f'dependency cycle among {", ".join(sorted(wanted - done))}')
    order.append(ready[0])
    done.add(ready[0])
  return order


def preflight(spec: Dict[str, Any]) -> None:
  """What Kubeflow Pipelines refuses before running anything: task names Argo rejects, and
  executors other than containers (its backend implements no resolver)."""
  for name, task in spec['root']['dag']['tasks'].items():
    if not compile_kfp.ARGO_NAME.match(name):
      raise LauncherError(f'task {name!r}: not a valid Argo task name (letters, digits, "-")')
    label = spec['components'][task['componentRef']['name']]['executorLabel']
    executor = spec['deploymentSpec']['executors'][label]
    if 'container' not in executor:
      raise LauncherError(f'task {name}: a {next(iter(executor))} executor; Kubeflow Pipelines '
                          'runs no resolver tasks, and this launcher runs container tasks only')


def _as_text(value: Any) -> str:
  """A parameter value as Kubeflow's driver turns it into a STRING parameter."""
  if isinstance(value, str):
    return value
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, float):
    return repr(int(value)) if value.is_integer() else repr(value)
  return json.dumps(value, separators=(',', ':'))


def resolve_parameters(task_name: str, task: Dict, component: Dict,
                       run_parameters: Dict[str, Any]) -> Dict[str, Any]:
  """The task's parameter values, typed as the component declares them (the driver's checks,
  plus one it lacks: a fractional number for an integer, which TFX would truncate)."""
  values = {}
  for name, source in task.get('inputs', {}).get('parameters', {}).items():
    if 'runtimeValue' in source:
      values[name] = source['runtimeValue']['constant']
    elif 'componentInputParameter' in source:
      pipeline_parameter = source['componentInputParameter']
      if pipeline_parameter not in run_parameters:
        raise LauncherError(f'task {task_name}: parameter {name} takes the run-time parameter '
                            f'{pipeline_parameter}, which has neither a value nor a default')
      values[name] = run_parameters[pipeline_parameter]
    else:
      raise LauncherError(f'task {task_name}: parameter {name}: {next(iter(source))} inputs '
                          'are not supported here')
  for name, declared in component.get('inputDefinitions', {}).get('parameters', {}).items():
    kind = declared['parameterType']
    if name not in values:
      if 'defaultValue' in declared:
        values[name] = declared['defaultValue']
        continue
      if declared.get('isOptional'):
        continue
      raise LauncherError(f'task {task_name}: parameter {name} ({kind}) has no value')
    value = values[name]
    if kind == 'STRING':
      values[name] = _as_text(value)
    elif kind in _NUMBER_TYPES and (isinstance(value, bool) or
                                    not isinstance(value, (int, float))):
      raise LauncherError(f'task {task_name}: parameter {name} expects {kind}, got {value!r}')
    elif kind == 'NUMBER_INTEGER' and not float(value).is_integer():
      raise LauncherError(f'task {task_name}: parameter {name} is NUMBER_INTEGER, but its '
                          f'value {value!r} is fractional (TFX would truncate it)')
    elif kind == 'BOOLEAN' and not isinstance(value, bool):
      raise LauncherError(f'task {task_name}: parameter {name} expects BOOLEAN, got {value!r}')
  return values


def placeholders(executor_input: Dict[str, Any]) -> Dict[str, str]:
  """Kubeflow's placeholders and their values (launcher_v2.go getPlaceholders)."""
  values = {'{{$}}': json.dumps(executor_input, separators=(',', ':'))}
  for name, value in executor_input['inputs'].get('parameterValues', {}).items():
    values[f"{{{{$.inputs.parameters['{name}']}}}}"] = _as_text(value)
  for side in ('inputs', 'outputs'):
    for name, artifacts in executor_input[side].get('artifacts', {}).items():
      values[f"{{{{$.{side}.artifacts['{name}'].uri}}}}"] = artifacts['artifacts'][0]['uri']
  return values


def _fill(words: Sequence[str], values: Dict[str, str]) -> List[str]:
  filled = []
  for word in words:
    for placeholder, value in values.items():
      word = word.replace(placeholder, value)
    filled.append(word)
  return filled


def _recorded(artifact: Dict[str, Any], output_key: str, artifact_id: int) -> Dict[str, Any]:
  """An output artifact as a downstream task receives it from ML Metadata: an id for a name,
  numbers as doubles, booleans as 0/1, the output key as display name."""
  metadata = {key: float(value) if isinstance(value, (bool, int)) else value
              for key, value in (artifact.get('metadata') or {}).items()}
  metadata.setdefault('display_name', output_key)
  return {'name': str(artifact_id), 'uri': artifact['uri'],
          'type': {'instanceSchema': artifact['type'].get('instanceSchema')
                   or f"title: {artifact['type']['schemaTitle']}\n"},
          'metadata': metadata}


class Run:
  """One run of a spec: tasks share its pipeline root, run id and parameters."""

  def __init__(self, spec: Dict[str, Any], pipeline_root: str, work_dir: str,
               parameters: Optional[Dict[str, Any]] = None, platform: str = 'kubeflow',
               run_id: Optional[str] = None, log=print):
    if platform not in PLATFORMS:
      raise LauncherError(f'platform {platform!r}: choose one of {", ".join(PLATFORMS)}')
    preflight(spec)
    self.spec, self.platform, self.log = spec, platform, log
    self.run_id = run_id or str(uuid.uuid4())
    self.root = pipeline_root.rstrip('/')
    self.work_dir = os.path.join(work_dir, self.run_id)
    declared = spec['root'].get('inputDefinitions', {}).get('parameters', {})
    unknown = sorted(set(parameters or {}) - set(declared))
    if unknown:
      raise LauncherError(f'no run-time parameter {", ".join(unknown)}; the spec has '
                          f'{", ".join(sorted(declared)) or "none"}')
    self.parameters = {name: p['defaultValue'] for name, p in declared.items()
                       if 'defaultValue' in p}
    self.parameters.update(parameters or {})
    self.env, self.cwd = image_environment()
    self.tasks: Dict[str, TaskRun] = {}
    self._next_id = 1

  def _task_root(self, name: str) -> str:
    if self.platform == 'vertex':  # {root}/{project number}/{job id}/{task}_{task id}
      return f'{self.root}/0/{self.run_id}/{name}_{len(self.tasks) + 1}'
    pipeline_name = self.spec['pipelineInfo']['name']
    return f'{self.root}/{pipeline_name}/{self.run_id}/{name}'

  def executor_input(self, name: str, folder: str) -> Dict[str, Any]:
    task = self.spec['root']['dag']['tasks'][name]
    component = self.spec['components'][task['componentRef']['name']]
    artifacts = {}
    for key, source in task.get('inputs', {}).get('artifacts', {}).items():
      producer = source.get('taskOutputArtifact')
      if not producer:
        raise LauncherError(f'task {name}: input {key}: only task outputs are supported here')
      upstream = self.tasks[producer['producerTask']].outputs[producer['outputArtifactKey']]
      artifacts[key] = {'artifacts': [upstream]}
    outputs = {key: {'artifacts': [{'uri': f'{self._task_root(name)}/{key}',
                                    'type': definition['artifactType'],
                                    'metadata': definition.get('metadata', {})}]}
               for key, definition in component.get('outputDefinitions', {})
               .get('artifacts', {}).items()}
    if component.get('outputDefinitions', {}).get('parameters'):
      raise LauncherError(f'task {name}: output parameters are not supported here')
    output_file = (f'{self._task_root(name)}/executor_output.json' if self.platform == 'vertex'
                   else os.path.join(folder, KFP_OUTPUT_FILE))
    return {'inputs': {'parameterValues': resolve_parameters(name, task, component,
                                                             self.parameters),
                       'artifacts': artifacts},
            'outputs': {'artifacts': outputs, 'outputFile': output_file}}

  def _execute(self, name: str, step: str, container: Dict, values: Dict[str, str],
               log_file) -> List[str]:
    command = _fill(container['command'], values) + _fill(container.get('args', []), values)
    log_file.write(f'--- {step}: {shlex.join(command)[:2000]}\n')
    log_file.flush()
    result = subprocess.run(command, cwd=self.cwd, env=self.env, stdout=log_file,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if result.returncode:
      log_file.flush()
      with open(log_file.name) as f:
        tail = f.read()[-3000:]
      raise LauncherError(f'task {name}: {step} exited with {result.returncode}; the end of '
                          f'{log_file.name}:\n{tail}')
    return command

  def run_task(self, name: str) -> TaskRun:
    from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
    from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
    task = self.spec['root']['dag']['tasks'][name]
    label = self.spec['components'][task['componentRef']['name']]['executorLabel']
    container = self.spec['deploymentSpec']['executors'][label]['container']
    folder = os.path.join(self.work_dir, name)
    os.makedirs(os.path.join(folder, os.path.dirname(KFP_OUTPUT_FILE)), exist_ok=True)
    executor_input = self.executor_input(name, folder)
    # As the Go launcher marshals it (and a check that it is a valid ExecutorInput).
    executor_input = json_format.MessageToDict(json_format.ParseDict(
        executor_input, pipeline_spec_pb2.ExecutorInput()))
    with open(os.path.join(folder, 'executor_input.json'), 'w') as f:
      json.dump(executor_input, f, indent=2)
    values = placeholders(executor_input)
    start = time.time()
    with open(os.path.join(folder, 'log.txt'), 'w') as log_file:
      hook = container.get('lifecycle', {}).get('preCacheCheck')
      if hook and self.platform == 'vertex':
        self._execute(name, 'preCacheCheck', hook, values, log_file)
      command = self._execute(name, 'executor', container, values, log_file)
    outputs = {key: artifacts['artifacts'][0]
               for key, artifacts in executor_input['outputs'].get('artifacts', {}).items()}
    output_file = executor_input['outputs']['outputFile']
    if os.path.exists(output_file):
      with open(output_file) as f:
        reported = json.load(f).get('artifacts', {})
      for key, artifacts in reported.items():  # launcher_v2.go mergeRuntimeArtifacts
        if key in outputs and artifacts.get('artifacts'):
          outputs[key] = dict(outputs[key], uri=artifacts['artifacts'][0].get('uri')
                              or outputs[key]['uri'])
          outputs[key]['metadata'] = {**outputs[key].get('metadata', {}),
                                      **artifacts['artifacts'][0].get('metadata', {})}
    recorded = {}
    for key in sorted(outputs):
      recorded[key] = _recorded(outputs[key], key, self._next_id)
      self._next_id += 1
    run = TaskRun(name, command, time.time() - start, recorded, folder)
    self.tasks[name] = run
    return run

  def run(self, only: Sequence[str] = ()) -> Dict[str, TaskRun]:
    order = task_order(self.spec, only)
    for number, name in enumerate(order, 1):
      self.log(f'[{number}/{len(order)}] {name} ...')
      run = self.run_task(name)
      self.log(f'[{number}/{len(order)}] {name}: done in {run.seconds:.0f} s')
    return self.tasks


def compile_local(config: config_lib.PipelineConfig, spec_file: str) -> Dict[str, Any]:
  """The cluster spec of `config` with this machine's paths and the profile's Beam settings."""
  cluster = compile_kfp.ClusterConfig(
      image='quickdraw-tfx:local', schema_file=os.path.join(ROOT, 'schema', 'schema.pbtxt'),
      beam_pipeline_args=tuple(config.beam_pipeline_args))
  compile_kfp.compile_pipeline(config, cluster, spec_file, local=True)
  return read_spec(spec_file)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--profile', default='smoke', choices=config_lib.profile_names())
  parser.add_argument('--output-dir', required=True, help='a folder: the spec, the pipeline '
                      'root (<output-dir>/pipeline_root/<name>), each task\'s executor input and '
                      'log (<output-dir>/local_launcher/<run id>) and the registry')
  parser.add_argument('--source', help='default: as quickdraw-tfx run')
  parser.add_argument('--seed', type=int)
  parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                      help='a run-time parameter, e.g. min_map=0.05; repeatable')
  parser.add_argument('--tasks', help='comma-separated tasks to run, with their upstream '
                      '(default: all)')
  parser.add_argument('--platform', choices=PLATFORMS, default='kubeflow',
                      help='whose launcher to follow (default: %(default)s)')


def main(argv: Optional[List[str]] = None) -> int:
  legacy_keras.enable()  # Before TFX imports TensorFlow.
  parser = argparse.ArgumentParser(prog='python -m kubeflow.local_launcher', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  overrides = {'output_dir': os.path.abspath(args.output_dir)}
  if args.source:
    overrides['source'] = args.source
  if args.seed is not None:
    overrides['seed'] = args.seed
  try:
    config = config_lib.profile(args.profile, **overrides)
    spec_file = os.path.join(config.output_dir, 'kfp', f'{config.pipeline_name}.yaml')
    spec = compile_local(config, spec_file)
    parameters = submit_kfp.parse_parameters(submit_kfp.read_spec(spec_file), args.param)
    run = Run(spec, spec['defaultPipelineRoot'],
              os.path.join(config.output_dir, 'local_launcher'), parameters, args.platform)
    print(f'{spec_file}: run {run.run_id} on {args.platform}, parameters {run.parameters}',
          flush=True)
    tasks = run.run([t for t in (args.tasks or '').split(',') if t])
  except (compile_kfp.UsageError, submit_kfp.UsageError) as e:
    print(f'local_launcher: {e}', file=sys.stderr)
    return 2
  except LauncherError as e:
    print(f'local_launcher: {e}', file=sys.stderr)
    return 1
  for name, task in tasks.items():
    if 'evaluation' in task.outputs:
      metadata = task.outputs['evaluation']['metadata']
      print(f'{name}: ' + ', '.join(f'{key} {metadata[key]:.4f}' for key in (
          'train_accuracy', 'test_accuracy', 'map') if key in metadata))
    if 'pushed_model' in task.outputs:
      metadata = task.outputs['pushed_model']['metadata']
      print(f'{name}: pushed {bool(metadata.get("pushed"))} '
            f'{metadata.get("pushed_destination", "")}')
  print(f'executor inputs and logs: {run.work_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
