"""Compiles create_pipeline(...) with TFX's KubeflowV2DagRunner into a Kubeflow Pipelines spec.

  quickdraw-tfx compile-kfp --image REGISTRY/quickdraw-tfx:0.1.0 \\
      --output-dir gs://BUCKET/quickdraw-tfx --gcp-project PROJECT --region us-central1
  make kfp KFP_ARGS="--image ... --output-dir gs://... --beam-runner flink --beam-endpoint ..."

A .yaml output is the PipelineSpec that Kubeflow Pipelines (`kfp.Client`, the UI) uploads; a
.json output is the PipelineJob that Vertex AI Pipelines runs. Both Trainers and both
EmbeddingEvaluators request accelerators; the other components CPU and memory only. The Beam
stages (ExampleGen, StatisticsGen, Transform) get arguments for a distributed Beam runner.
The blessing thresholds are run-time parameters. See docs/kubeflow.md.
"""
import argparse
import dataclasses
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common import legacy_keras
from pipeline import config as config_lib

# Where kubeflow/Dockerfile puts the project inside the image; the compiled ImportSchemaGen
# reads the schema there (a path of this machine would mean nothing in a pod).
IMAGE_PROJECT_DIR = '/opt/quickdraw-tfx'
IMAGE_SCHEMA_FILE = IMAGE_PROJECT_DIR + '/schema/schema.pbtxt'
# The public bucket as a filesystem: KFP's ExampleGen driver lists the source's files, which
# an https:// prefix does not allow.
GCS_PUBLIC_SOURCE = 'gs://quickdraw_dataset/full/simplified'
DEFAULT_OUTPUT_FILE = os.path.join('outputs', 'kfp', '{pipeline_name}.yaml')
# Components that run models on many images, so get the accelerators.
GPU_COMPONENT_PREFIXES = ('Trainer.', 'EmbeddingEvaluator.')
# Pipeline parameters settable per run (submit-kfp --param NAME=VALUE); defaults from the profile.
RUNTIME_PARAMETERS = ('min_test_accuracy', 'min_map')
BEAM_RUNNERS = ('dataflow', 'flink', 'spark', 'direct')
# Kubeflow Pipelines' backend makes each task an Argo DAG task (`<task>-driver` too), whose
# names Argo accepts only in this shape (workflowFieldNameFmt, at most 128 characters): the
# component ids' dots (Trainer.sknet) would have the workflow rejected.
ARGO_NAME = re.compile(r'^[a-zA-Z0-9][-a-zA-Z0-9]*$')
ARGO_NAME_MAX = 128 - len('-driver')
# A Beam SDK worker pool beside each Flink/Spark task manager (the image run with
# `--worker_pool`); see docs/kubeflow.md.
WORKER_POOL_ENDPOINT = 'localhost:50000'


class UsageError(ValueError):
  """A flag combination that cannot make a working spec; the message says the fix."""


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
  """What the cluster run needs beyond the pipeline configuration."""
  image: str
  # Kubernetes resource name on Kubeflow Pipelines (nvidia.com/gpu); on Vertex AI Pipelines a
  # machine accelerator such as NVIDIA_TESLA_T4 or NVIDIA_L4.
  accelerator_type: str = 'nvidia.com/gpu'
  accelerator_count: int = 1
  gpu_cpu_limit: float = 4.0
  gpu_memory_limit_gb: float = 16.0
  cpu_limit: float = 2.0
  memory_limit_gb: float = 8.0
  schema_file: str = IMAGE_SCHEMA_FILE
  beam_pipeline_args: Tuple[str, ...] = ()


def _is_remote(uri: str) -> bool:
  return '://' in uri and not uri.startswith('file://')


def task_name(component_id: str) -> str:
  """The task name of a component in the compiled spec: Trainer.sknet -> Trainer-sknet."""
  return component_id.replace('.', '-')


def _rename_tasks(spec: Dict[str, Any]) -> None:
  """Component ids as Argo-valid task, component and executor names, references included."""
  dag = spec['root']['dag']
  dag['tasks'] = {task_name(name): task for name, task in dag['tasks'].items()}
  spec['components'] = {task_name(name): component
                        for name, component in spec['components'].items()}
  executors = spec['deploymentSpec']['executors']
  spec['deploymentSpec']['executors'] = {task_name(label): executor
                                         for label, executor in executors.items()}
  for component in spec['components'].values():
    if 'executorLabel' in component:
      component['executorLabel'] = task_name(component['executorLabel'])
  for name, task in dag['tasks'].items():
    task['taskInfo']['name'] = name
    task['componentRef']['name'] = task_name(task['componentRef']['name'])
    if 'dependentTasks' in task:
      task['dependentTasks'] = [task_name(t) for t in task['dependentTasks']]
    for artifact in task.get('inputs', {}).get('artifacts', {}).values():
      producer = artifact.get('taskOutputArtifact')
      if producer:
        producer['producerTask'] = task_name(producer['producerTask'])
    if not ARGO_NAME.match(name) or len(name) > ARGO_NAME_MAX:
      raise UsageError(f'task {name!r}: Kubeflow Pipelines (Argo) takes task names of letters, '
                       f'digits and "-" only, at most {ARGO_NAME_MAX} characters; rename the '
                       'component or model')


def beam_pipeline_args(runner: str, output_dir: str, image: str, gcp_project: str = '',
                       region: str = '', endpoint: str = '', max_workers: int = 20,
                       direct_workers: int = 1, extra: Sequence[str] = ()) -> Tuple[str, ...]:
  """Arguments for the Beam stages on `runner`; `extra` comes last, so it overrides."""
  if runner == 'dataflow':
    if not (gcp_project and region):
      raise UsageError('--beam-runner dataflow needs --gcp-project and --region (or choose '
                       '--beam-runner flink, spark or direct)')
    args = ['--runner=DataflowRunner', f'--project={gcp_project}', f'--region={region}',
            f'--temp_location={output_dir.rstrip("/")}/tmp/beam',
            # The workers run the project's DoFns (ExampleGen's sampling and rendering), so
            # they use the same image as the components.
            f'--sdk_container_image={image}', f'--max_num_workers={max_workers}']
  elif runner in ('flink', 'spark'):
    if not endpoint:
      example = 'flink-jobmanager:8081' if runner == 'flink' else 'spark://spark-master:7077'
      raise UsageError(f'--beam-runner {runner} needs --beam-endpoint (e.g. {example})')
    if runner == 'flink':
      args = ['--runner=FlinkRunner', f'--flink_master={endpoint}',
              f'--parallelism={max_workers}']
    else:
      args = ['--runner=SparkRunner', f'--spark_master_url={endpoint}']
    args += ['--environment_type=EXTERNAL', f'--environment_config={WORKER_POOL_ENDPOINT}']
  elif runner == 'direct':
    # Inside the component's own pod, one process per vCPU of its limit (Beam's 0 would
    # count the node's cores, not the pod's).
    args = ['--direct_running_mode=multi_processing',
            f'--direct_num_workers={max(1, direct_workers)}']
  else:
    raise UsageError(f'unknown Beam runner {runner!r}; choose one of {", ".join(BEAM_RUNNERS)}')
  return tuple(args) + tuple(extra)


def _resource_spec(cpu_limit: float, memory_limit_gb: float, accelerator_type: str = '',
                   accelerator_count: int = 0):
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  resource_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  spec = resource_spec(cpu_limit=cpu_limit, memory_limit=memory_limit_gb)
  if accelerator_type and accelerator_count > 0:
    spec.accelerator.CopyFrom(resource_spec.AcceleratorConfig(
        type=accelerator_type, count=accelerator_count))
  return spec


def apply_resources(components, cluster: ClusterConfig) -> None:
  """GPUs for the Trainers and Evaluators, CPU and memory for the rest (the platform config)."""
  from tfx.components import FileBasedExampleGen  # pylint: disable=g-import-not-at-top
  for component in components:
    if isinstance(component, FileBasedExampleGen):
      # TFX 1.16's v2 compiler builds ExampleGen's container without its platform config;
      # its heavy work runs on the Beam runner anyway.
      continue
    if component.id.startswith(GPU_COMPONENT_PREFIXES):
      component.with_platform_config(_resource_spec(
          cluster.gpu_cpu_limit, cluster.gpu_memory_limit_gb, cluster.accelerator_type,
          cluster.accelerator_count))
    else:
      component.with_platform_config(_resource_spec(cluster.cpu_limit, cluster.memory_limit_gb))


def cluster_pipeline(config: config_lib.PipelineConfig, cluster: ClusterConfig):
  """create_pipeline(config) made for the cluster: remote paths, resources, run-time parameters."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import data_types  # pylint: disable=g-import-not-at-top
  from pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  parameters = {name: data_types.RuntimeParameter(name=name, ptype=float,
                                                  default=float(getattr(config, name)))
                for name in RUNTIME_PARAMETERS}
  # Kubeflow Pipelines runs no resolver tasks, so no baseline can be resolved from ML Metadata
  # on the cluster: the Evaluators bless on the value thresholds alone (printed at compile).
  config = config.replace(beam_pipeline_args=cluster.beam_pipeline_args,
                          max_accuracy_drop=None, max_map_drop=None, **parameters)
  # Kubeflow Pipelines records lineage in its own ML Metadata; the runner ignores this
  # config, and the default SQLite one would try to create folders under a gs:// root.
  tfx_pipeline = create_pipeline(config, metadata_connection_config=metadata_store_pb2
                                 .ConnectionConfig(), schema_file=cluster.schema_file)
  apply_resources(tfx_pipeline.components, cluster)
  return tfx_pipeline, {name: p.default for name, p in parameters.items()}


def compile_pipeline(config: config_lib.PipelineConfig, cluster: ClusterConfig,
                     output_file: str, local: bool = False) -> Dict[str, Any]:
  """Writes the spec for `config` to `output_file` (.yaml/.yml: PipelineSpec, .json:
  PipelineJob) and returns the PipelineJob as a dict.

  `local` accepts this machine's paths, for kubeflow/local_launcher.py, which runs the spec here.
  """
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  import yaml  # pylint: disable=g-import-not-at-top
  for name, uri in (('output dir', config.output_dir), ('source', config.source)):
    if not (local or _is_remote(uri)):
      raise UsageError(f'the {name} {uri!r} is not a URI that pods can reach; give a gs:// '
                       '(or other cluster filesystem) location')
  warm = sorted(name for name in config.models if config.training[name].warm_start)
  if warm:
    # Its resolver compiles to a ResolverSpec, which Kubeflow Pipelines' backend does not
    # implement, and whose query (the newest tfx.Model) would not tell the two Trainers apart.
    raise UsageError(f'warm_start is set for {", ".join(warm)}: the compiled pipeline cannot '
                     'warm start (Kubeflow Pipelines runs no resolver tasks); set warm_start: '
                     'false in the training configuration')
  if config.source.startswith(('http://', 'https://')):
    raise UsageError(f'source {config.source}: Kubeflow\'s ExampleGen driver lists the '
                     f'source files, which https:// does not allow; use {GCS_PUBLIC_SOURCE}')
  if not output_file.endswith(('.yaml', '.yml', '.json')):
    raise UsageError(f'{output_file}: the output file must end in .yaml, .yml or .json')
  tfx_pipeline, defaults = cluster_pipeline(config, cluster)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=cluster.image, use_pipeline_spec_2_1=True))
  job = runner.run(tfx_pipeline, parameter_values=defaults, write_out=False)
  # TFX leaves run-time parameters without defaults in the spec; KFP needs them to start a
  # run that does not set every parameter.
  declared = job['pipelineSpec']['root']['inputDefinitions']['parameters']
  for name, value in defaults.items():
    declared[name].update(defaultValue=value, isOptional=True)
  _rename_tasks(job['pipelineSpec'])
  # Where the run's artifacts go: submit-kfp passes it as the run's pipeline root (Kubeflow
  # Pipelines would otherwise use its own default, minio://, which TFX cannot write to).
  job['pipelineSpec']['defaultPipelineRoot'] = config.pipeline_root
  os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
  with open(output_file, 'w') as f:
    if output_file.endswith('.json'):
      json.dump(job, f, indent=2, sort_keys=True)
    else:
      yaml.safe_dump(job['pipelineSpec'], f, sort_keys=True)
  return job


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--image', required=True, help='container image built from kubeflow/'
                      'Dockerfile, e.g. us-docker.pkg.dev/PROJECT/REPO/quickdraw-tfx:0.1.0')
  parser.add_argument('--output-dir', required=True, help='cluster storage for the run, e.g. '
                      'gs://BUCKET/quickdraw-tfx: the pipeline root is <output-dir>/pipeline_root/'
                      '<pipeline name>, the model registry <output-dir>/registry')
  parser.add_argument('--profile', default='full', choices=config_lib.profile_names())
  parser.add_argument('--source', default=GCS_PUBLIC_SOURCE, help='gs:// (or other cluster '
                      'filesystem) prefix of <category>.ndjson[.gz] files (default: %(default)s)')
  parser.add_argument('--output-file', help='where the spec goes: .yaml for Kubeflow '
                      'Pipelines, .json for Vertex AI Pipelines (default: outputs/kfp/'
                      '<pipeline name>.yaml)')
  parser.add_argument('--seed', type=int)
  parser.add_argument('--schema-file', default=IMAGE_SCHEMA_FILE,
                      help='schema path inside the image, or a gs:// file (default: %(default)s)')
  gpu = parser.add_argument_group('resources (CPU and memory limits in vCPUs and GB)')
  defaults = ClusterConfig(image='')
  gpu.add_argument('--accelerator-type', default=defaults.accelerator_type,
                   help='nvidia.com/gpu on Kubeflow Pipelines; NVIDIA_TESLA_T4, NVIDIA_L4, ... on '
                   'Vertex AI (default: %(default)s)')
  gpu.add_argument('--accelerator-count', type=int, default=defaults.accelerator_count,
                   help='GPUs per Trainer and per Evaluator; 0 runs them on CPU '
                   '(default: %(default)s)')
  gpu.add_argument('--gpu-cpu-limit', type=float, default=defaults.gpu_cpu_limit)
  gpu.add_argument('--gpu-memory-limit', type=float, default=defaults.gpu_memory_limit_gb)
  gpu.add_argument('--cpu-limit', type=float, default=defaults.cpu_limit,
                   help='for the components without GPU (default: %(default)s)')
  gpu.add_argument('--memory-limit', type=float, default=defaults.memory_limit_gb,
                   help='for the components without GPU (default: %(default)s)')
  beam = parser.add_argument_group('Beam stages (ExampleGen, StatisticsGen, Transform)')
  beam.add_argument('--beam-runner', default='dataflow', choices=BEAM_RUNNERS,
                    help='(default: %(default)s)')
  beam.add_argument('--gcp-project', help='Dataflow: the Google Cloud project')
  beam.add_argument('--region', help='Dataflow: the region, e.g. us-central1')
  beam.add_argument('--beam-endpoint', help='Flink: the JobManager host:port; Spark: the '
                    'master URL spark://host:7077')
  beam.add_argument('--beam-max-workers', type=int, default=20,
                    help='Dataflow max_num_workers, Flink parallelism (default: %(default)s)')
  beam.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                    help='one more Beam argument, e.g. --beam-arg=--machine_type=n1-highmem-4; '
                    'repeatable; overrides the defaults')


def register(subparsers) -> None:
  """The `compile-kfp` subcommand of quickdraw-tfx (pipeline/cli.py)."""
  parser = subparsers.add_parser(
      'compile-kfp', help='compile the pipeline for Kubeflow Pipelines / Vertex AI',
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  parser.set_defaults(func=compile_command)


def parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m kubeflow.compile_kfp', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_arguments(parser)
  return parser.parse_args(argv)


def configs_from_args(args) -> Tuple[config_lib.PipelineConfig, ClusterConfig]:
  if args.accelerator_count < 0:
    raise UsageError('--accelerator-count must be 0 (no GPU) or more')
  limits = (args.gpu_cpu_limit, args.gpu_memory_limit, args.cpu_limit, args.memory_limit)
  if min(limits) <= 0:
    raise UsageError('CPU and memory limits must be positive')
  overrides = {'source': args.source, 'output_dir': args.output_dir}
  if args.seed is not None:
    overrides['seed'] = args.seed
  config = config_lib.profile(args.profile, **overrides)
  beam_args = beam_pipeline_args(
      args.beam_runner, args.output_dir, args.image, gcp_project=args.gcp_project or '',
      region=args.region or '', endpoint=args.beam_endpoint or '',
      max_workers=args.beam_max_workers, direct_workers=int(args.cpu_limit),
      extra=args.beam_arg)
  cluster = ClusterConfig(
      image=args.image, accelerator_type=args.accelerator_type,
      accelerator_count=args.accelerator_count, gpu_cpu_limit=args.gpu_cpu_limit,
      gpu_memory_limit_gb=args.gpu_memory_limit, cpu_limit=args.cpu_limit,
      memory_limit_gb=args.memory_limit, schema_file=args.schema_file,
      beam_pipeline_args=beam_args)
  return config, cluster


def compile_command(args) -> int:
  try:
    config, cluster = configs_from_args(args)
    output_file = args.output_file or DEFAULT_OUTPUT_FILE.format(
        pipeline_name=config.pipeline_name)
    job = compile_pipeline(config, cluster, output_file)
  except UsageError as e:
    print(f'quickdraw-tfx compile-kfp: {e}', file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except
    print(f'quickdraw-tfx compile-kfp: compiling failed: {type(e).__name__}: {e}',
          file=sys.stderr)
    return 1
  tasks = job['pipelineSpec']['root']['dag']['tasks']
  gpu_tasks = sorted(t for t in tasks if t.startswith(tuple(
      task_name(prefix) for prefix in GPU_COMPONENT_PREFIXES)))
  print(f'{output_file}: {len(tasks)} components, profile {config.profile} '
        f'({config.num_categories} categories x ({config.train_per_category} train + '
        f'{config.test_per_category} test))\n'
        f'  image: {cluster.image}\n  pipeline root: {config.pipeline_root}\n'
        f'  source: {config.source}\n'
        f'  accelerators: {cluster.accelerator_count} x {cluster.accelerator_type} each on '
        f'{", ".join(gpu_tasks)}\n'
        f'  Beam: {" ".join(cluster.beam_pipeline_args)}\n'
        + ('  blessing: value thresholds only; the change thresholds against a blessed '
           'baseline need a resolver task, which Kubeflow Pipelines does not run\n'
           if config.max_accuracy_drop is not None or config.max_map_drop is not None else '')
        + f'  run-time parameters: ' + ', '.join(
            f'{name}={value}' for name, value in sorted(
                job['runtimeConfig'].get('parameterValues', {}).items())))
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  legacy_keras.enable()  # Before TFX imports TensorFlow.
  return compile_command(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
  sys.exit(main())
