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

kubeflow/kfp_driver.py holds the driver's part (task order, parameters, placeholders); this
module provisions, runs and records.

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

from common import legacy_keras
from kubeflow import compile_kfp
from kubeflow import kfp_driver
from kubeflow import submit_kfp
from kubeflow.kfp_driver import LauncherError
from pipeline import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, 'kubeflow', 'Dockerfile')
# The image's virtualenv (Dockerfile ENV VIRTUAL_ENV); here, the one this runs in.
IMAGE_VENV = '/opt/venv'
PLATFORMS = ('kubeflow', 'vertex')
# Kubeflow Pipelines' launcher: ExecutorOutput goes to this file inside the pod.
KFP_OUTPUT_FILE = os.path.join('kfp_outputs', 'output_metadata.json')


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


class Run:
  """One run of a spec: tasks share its pipeline root, run id and parameters."""

  def __init__(self, spec: Dict[str, Any], pipeline_root: str, work_dir: str,
               parameters: Optional[Dict[str, Any]] = None, platform: str = 'kubeflow',
               run_id: Optional[str] = None, log=print):
    if platform not in PLATFORMS:
      raise LauncherError(f'platform {platform!r}: choose one of {", ".join(PLATFORMS)}')
    kfp_driver.preflight(spec)
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
    parameters = kfp_driver.resolve_parameters(name, task, component, self.parameters)
    return {'inputs': {'parameterValues': parameters, 'artifacts': artifacts},
            'outputs': {'artifacts': outputs, 'outputFile': output_file}}

  def _execute(self, name: str, step: str, container: Dict, values: Dict[str, str],
               log_file) -> List[str]:
    command = kfp_driver.fill([*container['command'], *container.get('args', [])], values)
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
    values = kfp_driver.placeholders(executor_input)
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
      recorded[key] = kfp_driver.recorded_artifact(outputs[key], key, self._next_id)
      self._next_id += 1
    run = TaskRun(name, command, time.time() - start, recorded, folder)
    self.tasks[name] = run
    return run

  def run(self, only: Sequence[str] = ()) -> Dict[str, TaskRun]:
    order = kfp_driver.task_order(self.spec, only)
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
  return kfp_driver.read_spec(spec_file)


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
