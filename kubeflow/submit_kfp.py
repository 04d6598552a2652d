"""Starts a run of a compiled spec on Kubeflow Pipelines with the KFP SDK client (kfp.Client).

  quickdraw-tfx submit-kfp --host https://KFP_HOST/pipeline \\
      --spec outputs/kfp/quickdraw-tfx-full.yaml --param min_map=0.35 --experiment quickdraw

--param values are checked against the spec's run-time parameters and converted to their
types before anything is sent. The run's pipeline root is the one compile-kfp recorded in the
spec (<output-dir>/pipeline_root/<pipeline name>) unless --pipeline-root says otherwise:
Kubeflow Pipelines would otherwise put the artifacts under its own default (minio://...), a
scheme TFX's file I/O cannot write. Vertex AI Pipelines takes the .json spec instead, with
google.cloud.aiplatform.PipelineJob(template_path=...); see docs/kubeflow.md.
"""
import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

# Pipeline parameter types (kfp-pipeline-spec ParameterType names) -> parser of a flag value.
_CONVERTERS = {
    'NUMBER_DOUBLE': float,
    'NUMBER_INTEGER': int,
    'STRING': str,
    'BOOLEAN': lambda text: {'true': True, 'false': False}[text.lower()],
}


class UsageError(ValueError):
  """Bad flags or spec; the message says the fix."""


def read_spec(path: str):
  """The PipelineSpec in a compiled .yaml file (what kfp.Client uploads)."""
  import yaml  # pylint: disable=g-import-not-at-top
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  if not path.endswith(('.yaml', '.yml')):
    raise UsageError(f'{path}: kfp.Client takes the .yaml spec; compile with --output-file '
                     'NAME.yaml (a .json spec is a Vertex AI PipelineJob)')
  if not os.path.isfile(path):
    raise UsageError(f'{path}: no such file; compile it first (quickdraw-tfx compile-kfp)')
  with open(path) as f:
    document = yaml.safe_load(f)
  try:
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
  except (json_format.ParseError, TypeError) as e:
    raise UsageError(f'{path}: not a Kubeflow PipelineSpec ({e})') from e


def parse_parameters(spec, assignments: Sequence[str]) -> Dict[str, Any]:
  """`NAME=VALUE` strings as typed arguments for the spec's run-time parameters."""
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  declared = spec.root.input_definitions.parameters
  type_name = pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name
  arguments = {}
  for assignment in assignments:
    name, sep, text = assignment.partition('=')
    if not sep or not name:
      raise UsageError(f'--param {assignment!r}: write NAME=VALUE')
    if name not in declared:
      raise UsageError(f'--param {name}: the spec has no such parameter; it has: '
                       f'{", ".join(sorted(declared)) or "none"}')
    kind = type_name(declared[name].parameter_type)
    try:
      arguments[name] = _CONVERTERS[kind](text)
    except (KeyError, ValueError) as e:
      raise UsageError(f'--param {name}={text}: not a valid {kind} value') from e
  return arguments


def pipeline_root(spec, override: Optional[str] = None) -> str:
  """--pipeline-root, else the root compile-kfp wrote into the spec; it must be a URI."""
  root = override or spec.default_pipeline_root
  if not root:
    raise UsageError('the spec names no pipeline root (compiled before compile-kfp recorded '
                     'it); recompile, or give --pipeline-root gs://BUCKET/...')
  if '://' not in root or root.startswith(('file://', 'minio://')):
    raise UsageError(f'pipeline root {root!r}: give a gs:// URI (or another cluster '
                     'filesystem that TFX\'s file I/O writes and every pod reaches)')
  return root


def submit(spec_file: str, arguments: Dict[str, Any], host: Optional[str], experiment: str,
           run_name: Optional[str] = None, namespace: Optional[str] = None,
           root: Optional[str] = None):
  """Creates the run; returns kfp's RunPipelineResult (run_id)."""
  import kfp  # pylint: disable=g-import-not-at-top
  client = kfp.Client(host=host, namespace=namespace or 'kubeflow')
  return client.create_run_from_pipeline_package(
      spec_file, arguments=arguments, run_name=run_name, experiment_name=experiment,
      namespace=namespace, pipeline_root=root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--spec', required=True, help='compiled .yaml spec (compile-kfp)')
  parser.add_argument('--host', default=os.environ.get('KFP_HOST'),
                      help='Kubeflow Pipelines API endpoint (default: $KFP_HOST; unset = the '
                      'in-cluster service, from a pod of the cluster)')
  parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                      help='a run-time parameter, e.g. min_map=0.35; repeatable')
  parser.add_argument('--pipeline-root', help='where the run\'s artifacts go (default: the '
                      'spec\'s, <output-dir>/pipeline_root/<pipeline name> of compile-kfp)')
  parser.add_argument('--experiment', default='quickdraw-tfx')
  parser.add_argument('--run-name')
  parser.add_argument('--namespace', help='multi-user Kubeflow: your profile namespace')


def register(subparsers) -> None:
  """The `submit-kfp` subcommand of quickdraw-tfx (pipeline/cli.py)."""
  parser = subparsers.add_parser(
      'submit-kfp', help='start a run of a compiled spec on Kubeflow Pipelines',
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  parser.set_defaults(func=submit_command)


def submit_command(args) -> int:
  try:
    spec = read_spec(args.spec)
    arguments = parse_parameters(spec, args.param)
    root = pipeline_root(spec, args.pipeline_root)
  except UsageError as e:
    print(f'quickdraw-tfx submit-kfp: {e}', file=sys.stderr)
    return 2
  try:
    result = submit(args.spec, arguments, args.host, args.experiment, args.run_name,
                    args.namespace, root)
  except Exception as e:  # pylint: disable=broad-except
    print(f'quickdraw-tfx submit-kfp: creating the run failed: {type(e).__name__}: {e}',
          file=sys.stderr)
    return 1
  print(f'run {result.run_id} of {spec.pipeline_info.name} in experiment {args.experiment} '
        f'with {arguments or "the spec defaults"}, pipeline root {root}')
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m kubeflow.submit_kfp', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  return submit_command(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
  sys.exit(main())
