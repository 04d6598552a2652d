"""What Kubeflow Pipelines' driver does with a compiled spec before a container task runs.

Reads and checks the PipelineSpec, orders its tasks, refuses what the backend would refuse,
resolves each task's parameters against the component's declared types, and builds the
placeholder values and the recorded form of output artifacts that downstream tasks receive.
kubeflow/local_launcher.py runs the tasks with these.
"""
import json
from typing import Any, Dict, List, Sequence

from kubeflow import compile_kfp

_NUMBER_TYPES = ('NUMBER_DOUBLE', 'NUMBER_INTEGER')


class LauncherError(RuntimeError):
  """The spec cannot run as written, or a task failed; the message names the task."""


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


def fill(words: Sequence[str], values: Dict[str, str]) -> List[str]:
  """A container's command and arguments with the placeholders replaced by their values."""
  filled = []
  for word in words:
    for placeholder, value in values.items():
      word = word.replace(placeholder, value)
    filled.append(word)
  return filled


def recorded_artifact(artifact: Dict[str, Any], output_key: str,
                      artifact_id: int) -> Dict[str, Any]:
  """An output artifact as a downstream task receives it from ML Metadata: an id for a name,
  numbers as doubles, booleans as 0/1, the output key as display name."""
  metadata = {key: float(value) if isinstance(value, (bool, int)) else value
              for key, value in (artifact.get('metadata') or {}).items()}
  metadata.setdefault('display_name', output_key)
  return {'name': str(artifact_id), 'uri': artifact['uri'],
          'type': {'instanceSchema': artifact['type'].get('instanceSchema')
                   or f"title: {artifact['type']['schemaTitle']}\n"},
          'metadata': metadata}
