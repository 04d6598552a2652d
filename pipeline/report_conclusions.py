"""The report's verdict (in the Abstract) and Conclusions: which model for which job on this
evidence, what limits the evidence, and what would change it.

Each sentence is built from a pipeline run's recorded values: the leads and whether they
exceed their 95% intervals (report_findings.lead), the test set's size and interval widths,
the budget against the `full` profile's, the models' FLOPs; a sentence whose values are
missing is left out.
"""
import dataclasses
from typing import List, Optional

from models.architectures import title
from pipeline import config as config_lib
from pipeline import report_distances
from pipeline import report_findings
from pipeline import report_recipe
from pipeline.report_data import RunResults
from pipeline.report_tables import num, with_interval

# (metrics key, the job, shown as a percentage)
JOBS = (('test_accuracy', 'classification', True), ('map', 'similarity search', False))


def _difference(run: RunResults, key: str, percent: bool) -> str:
  """' (skNet minus skResNet: +3.3 points, 95% interval [+2.4, +4.1])' from the paired row."""
  row = (run.comparison.get('paired_difference') or {}).get(key) or {}
  if row.get('difference') is None or row.get('ci95') is None:
    return ''
  first, second = run.comparison['models'][:2]
  scale, unit, digits = (100, ' points', 1) if percent else (1, '', 3)
  low, high = row['ci95']
  return (f' ({title(first)} minus {title(second)}: '
          f'{row["difference"] * scale:+.{digits}f}{unit}, 95% interval '
          f'[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}])')


def verdict(run: RunResults) -> str:
  """One sentence per job: who is better, or that this test set does not tell them apart."""
  parts = []
  for key, job, percent in JOBS:
    name, significant = report_findings.lead(run, key)
    if name is None:
      continue
    if significant:
      parts.append(f'{title(name)} is better at {job}{_difference(run, key, percent)}')
    elif significant is False:
      parts.append(f'the two models do not differ measurably at {job}'
                   f'{_difference(run, key, percent)}')
    else:
      parts.append(f'{title(name)} is ahead at {job} (no interval recorded to judge the margin)')
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
  return (f'{cheap.title} needs {1 - low / high:.0%} fewer FLOPs per image than {dear.title} '
          f'({low / 1e9:.2f} against {high / 1e9:.2f} GFLOPs)')


def recommendations(run: RunResults) -> List[str]:
  """Which model to use for which job, on this evidence."""
  leads = {job: report_findings.lead(run, key) for key, job, _ in JOBS}
  names = {name for name, _ in leads.values() if name}
  if len(names) == 1 and all(significant for _, significant in leads.values()):
    return [f'In this run {title(names.pop())} is the better model for both classification and '
            'similarity search, by more than the uncertainty of the test set.']
  points = []
  cheaper = _cheaper(run)
  for job, (name, significant) in leads.items():
    if name is None:
      continue
    if significant:
      points.append(f'For {job}, use {title(name)}: its lead exceeds the uncertainty of the '
                    'test set.')
    elif significant is False:
      points.append(f'For {job}, neither model is ahead by more than the uncertainty of the '
                    f'test set ({title(name)} leads inside its interval)'
                    + (f'; {cheaper}, which makes it the economical choice until a difference '
                       'is shown.' if cheaper else '.'))
    else:
      points.append(f'{title(name)} is ahead on {job} (no interval recorded to judge the margin).')
  return points


def _mean_speed(model) -> Optional[float]:
  speeds = model.history.get('images_per_second') or []
  return sum(speeds) / len(speeds) if speeds else None


def residual_design(run: RunResults) -> str:
  """Whether the residual connections paid off: the residual model's cost (FLOPs, training
  speed) against what it gained on each job, judged by the 95% intervals."""
  residual = [m for m in run.models[:2] if m.architecture.get('residual_additions')]
  plain = [m for m in run.models[:2] if m.architecture.get('residual_additions') == 0]
  if len(residual) != 1 or len(plain) != 1:
    return ''
  res, flat = residual[0], plain[0]
  costs = []
  if res.architecture.get('forward_flops') and flat.architecture.get('forward_flops'):
    costs.append(f'{res.architecture["forward_flops"] / flat.architecture["forward_flops"]:.2f}x '
                 'the FLOPs per image')
  speeds = _mean_speed(res), _mean_speed(flat)
  if all(speeds):
    costs.append(f'{speeds[0] / speeds[1]:.2f}x the training speed (images/s)')
  if any(m.metrics.get(key) is None for key, _, _ in JOBS for m in (res, flat)):
    return ''
  # lead() is (None, None) for equal values: a tie, no lead.
  gains = {job: report_findings.lead(run, key) for key, job, _ in JOBS}
  if any(name is not None and significant is None for name, significant in gains.values()):
    return ''  # A lead without an interval to judge it.
  won = [job for job, (name, significant) in gains.items() if name == res.name and significant]
  lost = [job for job, (name, significant) in gains.items() if name == flat.name and significant]
  cost = f' at {" and ".join(costs)} of {flat.title}' if costs else ''
  if won:
    return (f'The residual connections of {res.title} paid off for {" and ".join(won)}{cost}'
            + (f'; {flat.title} is better at {" and ".join(lost)}.' if lost else '.'))
  if lost:
    return (f'The residual connections of {res.title} did not pay off in this budget: '
            f'{res.title} ran{cost}, and {flat.title} is better at {" and ".join(lost)} by more '
            'than the uncertainty.')
  return (f'The residual connections of {res.title} did not pay off in this budget: '
          f'{res.title} ran{cost}, and is better at neither job by more than the uncertainty.')


def distance_choice(run: RunResults) -> str:
  """What the cosine-against-L2 comparison says about the server's distance, when cosine
  retrieved measurably better (or worse) for every model."""
  rows = [report_distances.cosine_against_l2(m) for m in run.models]
  if not rows or any(row is None or not row.get('excludes_zero') for row in rows):
    return ''
  signs = {row['difference'] > 0 for row in rows}
  if signs != {True}:
    return ('L2, the distance the search server ranks by, retrieved better than cosine for '
            'every model.') if signs == {False} else ''
  return ('The search server ranks by L2, yet cosine distance retrieved better for every '
          'model (' + ', '.join(f'{m.title} {row["difference"]:+.3f} mAP'
                                for m, row in zip(run.models, rows))
          + '): worth adopting once a second training run confirms it.')


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
      trained.append(f'{m.title}: {reached:.2f} epochs')
    elif budget:
      trained.append(f'{m.title}: {budget}')
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
  """The test size at which a difference inside its interval would come out of it."""
  points = []
  paired = run.comparison.get('paired_difference') or {}
  for key, job, percent in JOBS:
    row = paired.get(key) or {}
    if (row.get('excludes_zero') is False and row.get('difference') and row.get('ci95')
        and row.get('units')):
      half = (row['ci95'][1] - row['ci95'][0]) / 2
      needed = row['units'] * (half / abs(row['difference'])) ** 2
      shown = f'{row["difference"] * 100:+.1f} points' if percent else f'{row["difference"]:+.3f}'
      # At `needed` the interval's half-width equals the difference: a true difference of
      # this size then comes out of it half the time; (1.96 + 0.84)^2 / 1.96^2 = 2.04x that
      # test size gives it 80%.
      points.append(f'If the {job} difference seen here ({shown}) is the true one, a test set '
                    f'of about {needed:,.0f} drawings ({needed / row["units"]:.1f}x this one) '
                    'would make the paired interval about as narrow as the difference, so that '
                    f'it would exclude 0 about half the time, and about {2.04 * needed:,.0f} '
                    'would do so 80% of the time (the interval narrows as one over the square '
                    'root of the test size'
                    + ('; roughly, for mAP, whose gallery grows with the test set' if not percent
                       else '') + ').')
  return points


def conclusions(run: RunResults) -> List[str]:
  """Recommendations, the residual design and the distance, limits, what would change them,
  and which models failed their blessing (the pushed ones are in the Deliverables)."""
  points = recommendations(run) + [text for text in (residual_design(run), distance_choice(run))
                                   if text]
  points += limits(run) + what_would_change_it(run)
  if not all(m.pushed_to for m in run.models):
    points.append(report_findings.push_statement(run, thresholds_too=False))
  return points


def abstract_numbers(run: RunResults) -> List[str]:
  """Each model's headline numbers with their intervals, as the Abstract states them."""
  parts = []
  for m in run.models:
    if m.metrics.get('test_accuracy') is None:
      continue
    text = f'{m.title} classifies {with_interval(m.metrics, "test_accuracy")} of the test drawings'
    if m.metrics.get('map') is not None:
      text += f' and retrieves at mAP {with_interval(m.metrics, "map")}'
    parts.append(text)
  return parts


def abstract_budget(run: RunResults) -> str:
  """The training the numbers describe: the shared budget, the machine and precision, the
  epochs reached, for the Abstract."""
  budgets = {report_recipe.model_budget(m) for m in run.models}
  if len(budgets) != 1 or not next(iter(budgets)):
    return ''
  machine = run.models[0].history.get('machine') or {}
  where = (f' on a {machine["cpu_count"]}-core {machine["cpu_model"]} CPU'
           if machine.get('cpu_model') not in (None, '', 'unknown') and machine.get('cpu_count')
           else '')
  precisions = {m.history.get('precision') for m in run.models}
  how = (f' in {precisions.pop().replace("_", " ")}' if len(precisions) == 1
         and None not in precisions else '')
  reached = [(m.title, m.history['epochs_reached']) for m in run.models
             if m.history.get('epochs_reached') is not None]
  text = ('Both were trained with the same budget, ' if len(run.models) > 1 else
          'It was trained with a budget of ') + f'{budgets.pop()}{where}{how}'
  if reached:
    text += ', and reached ' + ' and '.join(
        f'{epochs:.2f} epochs' + (f' ({name})' if len(reached) > 1 else '')
        for name, epochs in reached)
  full_epochs = config_lib.PROFILES['full'].training[config_lib.MODEL_NAMES[0]].epochs
  if reached and max(epochs for _, epochs in reached) < full_epochs:
    text += (f', where the `full` profile trains {full_epochs} epochs: the numbers describe '
             'this budget, not the architectures trained to convergence')
  return text + '.'

