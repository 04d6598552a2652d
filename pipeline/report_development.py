"""The report's Development section in words: what each component did in this run, how the
data was built, and how the models were measured.

Every count, size and threshold comes from the run's artifacts (the manifest, the histories,
metrics.json, the Pushers' and ModelComparison's outputs); a sentence whose values the run
did not record is left out. The methods named (bottom-k sampling, area resizing, bootstrap)
are the code's, documented in docs/metrics.md and the modules cited there.
"""
from typing import Dict, List, Optional

from pipeline import report_tables
from pipeline.report_data import RunResults
from pipeline.report_tables import Table, num, pct


# What the components with nothing run-specific to report did.
PAST_ROLES = {'ImportSchemaGen': 'imported the curated schema (schema/schema.pbtxt)',
              'StatisticsGen': 'computed the statistics of the train and test splits',
              'ExampleValidator': 'checked those statistics against the schema'}


def _model(run: RunResults, name: str):
  return next((m for m in run.models if m.name == name), None)


def _did(run: RunResults, node, shown_source: str) -> str:
  """What the execution `node` did, from its outputs and the run's values."""
  kind, _, name = node.node_id.partition('.')
  model = _model(run, name)
  totals = run.manifest.get('totals') or {}
  if kind == 'QuickDrawExampleGen' and totals:
    count = run.sampling.get('num_categories')
    return (f'sampled {f"{count} " if count else ""}Quick, Draw! categories'
            + (f' from {shown_source}' if shown_source else '') +
            f': read {totals["read"]:,} drawings, removed '
            f'{totals["duplicates_removed"]:,} duplicates, wrote {totals["train"]:,} train and '
            f'{totals["test"]:,} test examples and the sampling manifest')
  if kind == 'Transform':
    materialized = bool(node.outputs.get('transformed_examples'))
    return (f'built the graph that decodes a PNG and resizes it to {run.image_size}x'
            f'{run.image_size}' + ('' if materialized else
                                   '; not materialized: the Trainers apply it on the fly and '
                                   'the exported models carry it'))
  if kind in ('BaselineResolver', 'LatestModelResolver'):
    found = bool(node.outputs.get('model'))
    return (('found a model of an earlier run' if found else 'found no earlier model') +
            (' to compare with (change thresholds)' if kind == 'BaselineResolver'
             else ' to warm-start from'))
  if kind == 'Trainer' and model is not None and model.history.get('steps') is not None:
    h = model.history
    return (f'fitted {model.title}: {h["steps"]:,} steps'
            + (f', {h["epochs_reached"]:.2f} epochs' if h.get('epochs_reached') is not None
               else '')
            + (f' in {h["training_seconds"] / 60:.1f} min' if h.get('training_seconds') else '')
            + (f', {h["precision"]}' if h.get('precision') else '')
            + '; exported it as a SavedModel')
  if kind == 'EmbeddingEvaluator' and model is not None and model.metrics.get('test_examples'):
    m = model.metrics
    return (f'ran {model.title} on {m["test_examples"]:,} test and {m.get("train_examples", 0):,} '
            f'train drawings with TFMA, scored {m.get("map_queries", 0):,} retrieval queries; '
            f'{"blessed" if m.get("blessed") else "not blessed"}')
  if kind == 'ModelComparison' and run.comparison.get('rows'):
    paired = run.comparison.get('paired_difference') or {}
    floors = sum(1 for row in run.comparison['rows'] if row['metric'].startswith('floors.'))
    return (f'set {len(run.comparison["rows"])} metrics of the two models side by side'
            + (f' ({floors} of them floors, context rather than a contest)' if floors else '')
            + (f', with paired intervals over {paired["test_drawings"]:,} test drawings'
               if paired.get('test_drawings') else ''))
  if kind == 'Pusher' and model is not None:
    if model.pushed_to:
      return (f'published {model.title} as '
              + (f'version {model.pushed_version} of ' if model.pushed_version else '')
              + 'the model registry, with its model card and search gallery')
    return f'did not push {model.title} (not blessed)'
  return PAST_ROLES.get(kind, report_tables.node_role(node.node_id))


def activity(run: RunResults, shown_source: str) -> Optional[Table]:
  """Each component in the order it started, its state and what it did in this run."""
  nodes = sorted(run.nodes.values(), key=lambda n: (n.start_time, n.node_id))
  if not nodes:
    return None
  return Table(['component', 'state', 'what it did in this run'],
               [[n.node_id, n.state.lower(), _did(run, n, shown_source)] for n in nodes])


def data_construction(run: RunResults, shown_source: str) -> List[str]:
  """Source, sampling, de-duplication, split sizes and rendering, from the manifest."""
  s, totals = run.sampling, run.manifest.get('totals') or {}
  points = []
  if s.get('num_categories'):
    choice = {'random (seeded)': 'at random', 'explicit': 'as listed in the settings'}.get(
        s.get('category_choice'), '')
    source = (f'Source: {shown_source}' + (f' ({s["format"]})' if s.get('format') else '')
              + '. ' if s.get('source') else '')
    points.append(source + f'{s["num_categories"]} categories were chosen'
                  + (f' {choice}' if choice else '')
                  + (f' with seed {s["seed"]}' if s.get('seed') is not None else '') + '.')
  if totals.get('read'):
    skipped = totals.get('skipped_total', 0)
    points.append(
        f'Each category file was read in one pass: {totals["read"]:,} drawings in all, '
        f'{skipped:,} unusable lines skipped, {totals.get("not_recognized_filtered", 0):,} '
        f'left out as not recognized by the game, and {totals["duplicates_removed"]:,} exact '
        f'duplicates removed ({totals["duplicates_removed"] / totals["read"]:.2%} of the '
        'drawings read). A seeded uniform sample without replacement (bottom-k on a keyed '
        'hash of each drawing) then drew the train and test drawings, so the sample does not '
        'depend on the order of the lines.')
  if totals.get('train') is not None and s.get('train_per_category'):
    test = (f' and {s["test_per_category"]} test' if s.get('test_per_category') is not None
            else '')
    points.append(f'Split sizes: {s["train_per_category"]} train{test} drawings per category, '
                  f'{totals["train"]:,} train and {totals.get("test", 0):,} test drawings in '
                  'all; the test drawings are used only by the Evaluators.')
  if s.get('render_size'):
    width = f' {s["stroke_width"]} px wide' if s.get('stroke_width') else ''
    points.append(f'Rendering: the strokes are drawn{width} on a '
                  f'{s["render_size"]}x{s["render_size"]} canvas and stored as PNG; the '
                  f'Transform graph averages them down (area resize) to {run.image_size}x'
                  f'{run.image_size}, ink 1 on paper 0: the networks\' input.')
  return points


def evaluation_protocol(run: RunResults, interval_note: str) -> List[str]:
  """Metrics, intervals, floors and blessing thresholds, as this run's Evaluators ran them."""
  m = run.models[0].metrics
  floors = report_tables.floors(run)
  points = []
  if m.get('test_examples'):
    train_total = (run.manifest.get('totals') or {}).get('train')
    sample = (' (a fixed sample of the training drawings)'
              if train_total and m.get('train_examples', 0) < train_total else '')
    points.append(f'Classification: top-1 and top-5 accuracy on the {m["test_examples"]:,} '
                  f'test drawings and on {m.get("train_examples", 0):,} train drawings{sample}, '
                  'computed by TFMA from each exported model\'s `embed` signature.')
  if m.get('map_queries'):
    dim = f'{m["embedding_dim"]}-d ' if m.get('embedding_dim') else ''
    points.append(f'Similarity search: every test drawing queries the other test drawings '
                  f'(leave-one-out), ranked by L2 distance between their {dim}fc_1 embeddings; '
                  'a result is relevant when it shares the query\'s category. A query\'s AP '
                  f'averages the precision at each relevant result; mAP is the mean over the '
                  f'{m["map_queries"]:,} scored queries. Precision at 10 and an 11-point '
                  'precision-recall curve come from the same rankings; cosine distance is '
                  'reported as an extra.')
  if interval_note:
    points.append(interval_note + ' ModelComparison resamples the test drawings with both '
                  'models\' outcomes at once (paired), which tells whether one model is ahead.')
  if floors['random_map'] is not None:
    raw = (f'; raw pixels ({floors["raw_pixels_dim"]:,}-d, L2) reach '
           f'{num(floors["raw_pixels_map"])}' if floors['raw_pixels_map'] is not None and
           floors['raw_pixels_dim'] else '')
    categories = m.get('num_categories') or run.sampling.get('num_categories')
    chance = (f'1 / {categories} = ' if categories else '') + pct(floors['chance_accuracy'])
    points.append(f'Floors: chance accuracy {chance}; a random ranking '
                  f'scores mAP {num(floors["random_map"])} on the same queries (its exact '
                  f'expectation){raw}.')
  thresholds = m.get('thresholds') or {}
  if thresholds.get('min_test_accuracy') is not None and thresholds.get('min_map') is not None:
    drops = [f'{label} more than {shown(thresholds[key])} below'
             for key, label, shown in (('max_accuracy_drop', 'test accuracy', pct),
                                       ('max_map_drop', 'mAP', num))
             if thresholds.get(key) is not None and thresholds[key] >= 0]
    points.append(f'Blessing (TFMA validation): a model is pushed when its test accuracy is at '
                  f'least {pct(thresholds["min_test_accuracy"])} and its mAP at least '
                  f'{num(thresholds["min_map"])}' + (
                      f', and neither {" nor ".join(drops)} the newest model of its Trainer '
                      'blessed in an earlier run' if drops else '') + '.')
    if drops:
      baselines = [x.title for x in run.models if x.metrics.get('baseline_model')]
      points.append(f'Compared with such a baseline: {", ".join(baselines)}.' if baselines else
                    'No model had a blessed baseline yet: its first blessing rubber-stamps the '
                    'change thresholds, as TFX\'s Evaluator does.')
  return points


def components_count(run: RunResults) -> Dict[str, int]:
  """How many executions ran and how many came from the cache."""
  states = [n.state for n in run.nodes.values()]
  return {'executions': len(states), 'cached': states.count('CACHED')}
