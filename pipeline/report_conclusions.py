"""The report's verdict (in the Abstract) and Conclusions: which model for which job on this
evidence, what limits the evidence, and what would change it.

Each sentence is built from the run's values: the leads and whether they exceed their 95%
intervals (report_findings.lead), the test set's size and interval widths, the budget against
the `full` profile's, the models' FLOPs; a sentence whose values are missing is left out.
"""
import dataclasses
from typing import List, Optional

from pipeline import config as config_lib
from pipeline import report_findings
from pipeline import report_recipe
from pipeline.report_data import RunResults
from pipeline.report_tables import num, with_interval

# (metrics key, the job, shown as a percentage)
JOBS = (('test_accuracy', 'classification', True), ('map', 'similarity search', False))


def _difference(run: RunResults, key: str, percent: bool) -> str:
  """' (sknet minus skresnet: +3.3 points, 95% interval [+2.4, +4.1])' from the paired row."""
  row = (run.comparison.get('paired_difference') or {}).get(key) or {}
  if row.get('difference') is None or row.get('ci95') is None:
    return ''
  first, second = run.comparison['models'][:2]
  scale, unit, digits = (100, ' points', 1) if percent else (1, '', 3)
  low, high = row['ci95']
  return (f' ({first} minus {second}: {row["difference"] * scale:+.{digits}f}{unit}, 95% '
          f'interval [{low * scale:+.{digits}f}, {high * scale:+.{digits}f}])')


def verdict(run: RunResults) -> str:
  """One sentence per job: who is better, or that this test set does not tell them apart."""
  parts = []
  for key, job, percent in JOBS:
    name, significant = report_findings.lead(run, key)
    if name is None:
      continue
    if significant:
      parts.append(f'{name} is better at {job}{_difference(run, key, percent)}')
    elif significant is False:
      parts.append(f'the two models do not differ measurably at {job}'
                   f'{_difference(run, key, percent)}')
    else:
      parts.append(f'{name} is ahead at {job} (no interval recorded to judge the margin)')
  if not parts:
    return ''
  return 'Verdict: ' + '; '.join(parts) + '.'


def _cheaper(run: RunResults) -> Optional[str]:
  """The model with fewer FLOPs per image, and by how much, when both exports were read."""
  known = [m for m in run.models[:2] if m.architecture.get('forward_flops')]
  if len(known) < 2:
    return None
  cheap, dear = sorted(known, key=lambda m: m.architecture['forward_flops'])
  low, high = cheap.architecture['forward_flops'], dear.architecture['forward_flops']
  return (f'{cheap.name} needs {1 - low / high:.0%} fewer FLOPs per image than {dear.name} '
          f'({low / 1e9:.2f} against {high / 1e9:.2f} GFLOPs)')


def recommendations(run: RunResults) -> List[str]:
  """Which model to use for which job, on this evidence."""
  leads = {job: report_findings.lead(run, key) for key, job, _ in JOBS}
  names = {name for name, _ in leads.values() if name}
  if len(names) == 1 and all(significant for _, significant in leads.values()):
    return [f'In this run {names.pop()} is the better model for both classification and '
            'similarity search, by more than the uncertainty of the test set.']
  points = []
  cheaper = _cheaper(run)
  for job, (name, significant) in leads.items():
    if name is None:
      continue
    if significant:
      points.append(f'For {job}, use {name}: its lead exceeds the uncertainty of the test set.')
    elif significant is False:
      points.append(f'For {job}, {name} is ahead within the uncertainty of the test set: no '
                    'winner on this data' + (f'; {cheaper}: the economical choice until a '
                                             'difference is shown.' if cheaper else '.'))
    else:
      points.append(f'{name} is ahead on {job} (no interval recorded to judge the margin).')
  return points


def scale_statement(run: RunResults) -> str:
  """How the run's data and training compare with the `full` profile's, when smaller."""
  full = config_lib.PROFILES['full']
  full_training = full.training[config_lib.MODEL_NAMES[0]]
  full_epochs = full_training.epochs
  s = run.sampling
  trained = []
  for m in run.models:
    reached = m.history.get('epochs_reached')
    budget = report_recipe.model_budget(m)
    if reached is not None:
      trained.append(f'{m.name}: {reached:.2f} epochs')
    elif budget:
      trained.append(f'{m.name}: {budget}')
  reached = [m.history.get('epochs_reached') for m in run.models]
  short_data = s.get('train_per_category') and s['train_per_category'] < full.train_per_category
  short_training = full_epochs >= 1 and any(e is not None and e < full_epochs for e in reached)
  if not (short_data or short_training):
    return ''
  full_budget = report_recipe.settings_budget(dataclasses.asdict(full_training))
  parts = ([f'used {s["train_per_category"]} training drawings per category']
           if s.get('train_per_category') else []) + (
               [f'trained {", ".join(trained)}'] if trained else [])
  if not parts:
    return ''
  return (f'The run {" and ".join(parts)}; the `full` profile trains {full.num_categories} '
          f'categories x {full.train_per_category} drawings'
          + (f' for {full_budget}' if full_budget else '') + '. The numbers describe this '
          'budget.')


def limits(run: RunResults) -> List[str]:
  """What limits the evidence: the budget, the test set's size, a single training run."""
  points = []
  scale = scale_statement(run)
  if scale:
    points.append(scale)
  m = run.models[0].metrics
  widths = {key: [(x.metrics[f'{key}_ci95'][1] - x.metrics[f'{key}_ci95'][0]) / 2
                  for x in run.models if x.metrics.get(f'{key}_ci95')]
            for key in ('test_accuracy', 'map')}
  if m.get('test_examples') and widths['test_accuracy']:
    accuracy = max(widths['test_accuracy'])
    text = (f'The test split holds {m["test_examples"]:,} drawings: a model\'s test accuracy is '
            f'known to about ±{accuracy * 100:.1f} points (95%)')
    if widths['map']:
      text += f' and its mAP to about ±{num(max(widths["map"]))}'
    points.append(text + '.')
  seed = run.sampling.get('seed')
  if seed is not None:
    points.append(f'Each model was trained once (seed {seed}): the intervals cover the choice '
                  'of test drawings, not the spread between training runs.')
  return points


def what_would_change_it(run: RunResults) -> List[str]:
  """The test size that would resolve a difference inside its interval, and training that
  had not levelled off."""
  points = []
  paired = run.comparison.get('paired_difference') or {}
  for key, job, percent in JOBS:
    row = paired.get(key) or {}
    if (row.get('excludes_zero') is False and row.get('difference') and row.get('ci95')
        and row.get('units')):
      half = (row['ci95'][1] - row['ci95'][0]) / 2
      needed = row['units'] * (half / abs(row['difference'])) ** 2
      shown = f'{row["difference"] * 100:+.1f} points' if percent else f'{row["difference"]:+.3f}'
      points.append(f'If the {job} difference seen here ({shown}) is real, a test set of about '
                    f'{needed:,.0f} drawings ({needed / row["units"]:.1f}x this one) would '
                    'show it: the paired interval narrows as one over the square root of the '
                    'test size.')
  falling = [m.name for m in run.models
             if len((m.history.get('history') or {}).get('loss') or []) >= 2
             and m.history['history']['loss'][-1] < 0.99 * m.history['history']['loss'][-2]]
  if falling:
    points.append(f'The training loss of {" and ".join(falling)} was still falling when the '
                  'budget ran out: a longer budget could change the numbers, and the ranking.')
  return points


def conclusions(run: RunResults) -> List[str]:
  """Recommendations, limits, what would change them, and what was pushed."""
  return (recommendations(run) + limits(run) + what_would_change_it(run)
          + [report_findings.push_statement(run, thresholds_too=False)])


def abstract_numbers(run: RunResults) -> List[str]:
  """Each model's headline numbers with their intervals, as the Abstract states them."""
  parts = []
  for m in run.models:
    if m.metrics.get('test_accuracy') is None:
      continue
    text = f'{m.name} classifies {with_interval(m.metrics, "test_accuracy")} of the test drawings'
    if m.metrics.get('map') is not None:
      text += f' and retrieves at mAP {with_interval(m.metrics, "map")}'
    parts.append(text)
  return parts

