"""What a pipeline run did, read back from ML Metadata: executions, artifacts, metrics."""
import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.evaluator import confidence
from components.evaluator.outputs import read_metrics

_STATES = metadata_store_pb2.Execution.State
_EVENTS = metadata_store_pb2.Event


@dataclasses.dataclass
class NodeRun:
  """One component's execution in a run, with its output artifacts by output key."""
  node_id: str
  state: str
  outputs: Dict[str, List[metadata_store_pb2.Artifact]]
  # Wall-clock bounds of the execution (seconds since the epoch) as ML Metadata recorded them;
  # for a CACHED node, the time it took to look up the cache.
  start_time: float = 0.0
  end_time: float = 0.0
  # The execution's exec properties (custom_config and the like) as TFX recorded them.
  properties: Dict[str, str] = dataclasses.field(default_factory=dict)
  # Its input artifacts by input key: with `outputs`, the run's lineage graph.
  inputs: Dict[str, List[metadata_store_pb2.Artifact]] = dataclasses.field(default_factory=dict)

  @property
  def seconds(self) -> float:
    return max(0.0, self.end_time - self.start_time)


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(f'{metadata_path}: no ML Metadata database; run the pipeline first.')
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def run_ids(store: metadata_store.MetadataStore, pipeline_name: str) -> List[str]:
  """This pipeline's run ids, oldest first."""
  pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
  if pipeline is None:
    return []
  runs = [c for c in store.get_children_contexts_by_context(pipeline.id)
          if c.type == 'pipeline_run'] or store.get_contexts_by_type('pipeline_run')
  return [c.name for c in sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))]


def node_runs(store: metadata_store.MetadataStore, pipeline_name: str,
              run_id: Optional[str] = None) -> Dict[str, NodeRun]:
  """Each component's execution in run `run_id` (default: the latest run), by node id."""
  if run_id is None:
    ids = run_ids(store, pipeline_name)
    if not ids:
      raise LookupError(f'no run of pipeline {pipeline_name!r} in this ML Metadata store')
    run_id = ids[-1]
  run = store.get_context_by_type_and_name('pipeline_run', run_id)
  if run is None:
    raise LookupError(f'no pipeline run {run_id!r}')
  executions = store.get_executions_by_context(run.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
  result = {}
  for execution in executions:
    node = next((c.name for c in store.get_contexts_by_execution(execution.id)
                 if c.type == 'node'), str(execution.id))
    node_id = node[len(pipeline_name) + 1:] if node.startswith(pipeline_name + '.') else node
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    inputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
      if event.execution_id != execution.id:
        continue
      key = event.path.steps[0].key if event.path.steps else ''
      if event.type in (_EVENTS.OUTPUT, _EVENTS.DECLARED_OUTPUT):
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
      elif event.type in (_EVENTS.INPUT, _EVENTS.DECLARED_INPUT):
        inputs.setdefault(key, []).append(artifacts[event.artifact_id])
    properties = {key: _value(value) for key, value in execution.custom_properties.items()}
    result[node_id] = NodeRun(node_id, _STATES.Name(execution.last_known_state), outputs,
                              execution.create_time_since_epoch / 1000,
                              execution.last_update_time_since_epoch / 1000, properties,
                              inputs)
  return result


def _value(value: metadata_store_pb2.Value) -> str:
  kind = value.WhichOneof('value')
  return str(getattr(value, kind)) if kind else ''


def model_summaries(nodes: Dict[str, NodeRun], model_names) -> List[dict]:
  """Per model: the evaluator's metrics and where (and whether) the model was pushed."""
  rows = []
  for name in model_names:
    row = {'model': name}
    evaluation = nodes.get(f'EmbeddingEvaluator.{name}')
    if evaluation and evaluation.outputs.get('evaluation'):
      row.update(read_metrics(evaluation.outputs['evaluation'][0].uri))
    pusher = nodes.get(f'Pusher.{name}')
    pushed = pusher.outputs.get('pushed_model', [None])[0] if pusher else None
    props = pushed.custom_properties if pushed is not None else {}
    row['pushed'] = bool(props['pushed'].int_value) if 'pushed' in props else False
    row['pushed_to'] = (props['pushed_destination'].string_value
                        if 'pushed_destination' in props else '')
    rows.append(row)
  return rows


def data_summary(nodes: Dict[str, NodeRun]) -> str:
  """One paragraph from the ExampleGen's sampling manifest: what was read, dropped and taken."""
  from components.example_gen.outputs import read_manifest  # pylint: disable=g-import-not-at-top
  node = nodes.get('QuickDrawExampleGen')
  manifests = node.outputs.get('manifest') if node else None
  if not manifests:
    return ''
  manifest = read_manifest(manifests[0])
  totals = manifest['totals']
  return (f"Data: {len(manifest['categories'])} categories ({manifest['format']}), "
          f"{totals['read']} drawings read, {totals['skipped_total']} skipped, "
          f"{totals['duplicates_removed']} duplicates removed, {totals['not_recognized_filtered']} "
          f"not recognized -> {totals['train']} train + {totals['test']} test\n"
          f"  manifest: {manifests[0].uri}/manifest.json")


def format_table(rows: List[dict]) -> str:
  """The run's summary: one line per model, with 95% intervals where metrics.json has them."""
  header = ('model', 'train acc [95% CI]', 'test acc [95% CI]', 'mAP (L2, fc_1) [95% CI]',
            'chance', 'random mAP', 'raw-pixel mAP', 'pushed to')
  lines = []
  for row in rows:
    def pct(key):  # An older metrics.json has no *_ci95 key: the value alone.
      return confidence.format_interval(row.get(key), row.get(f'{key}_ci95'), percent=True)
    def score(key):
      return confidence.format_interval(row.get(key), row.get(f'{key}_ci95'))
    where = row['pushed_to'] if row['pushed'] else 'not pushed (below thresholds)'
    lines.append((row['model'], pct('train_accuracy'), pct('test_accuracy'), score('map'),
                  pct('chance_accuracy'), score('random_map'), score('raw_pixels_map'), where))
  widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
  render = lambda r: '  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
  return '\n'.join([render(header), render(['-' * w for w in widths])] + [render(l) for l in lines])
