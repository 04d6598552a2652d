"""The report's findings, grouped by the question they answer: classification, similarity
search, per category, training behaviour.

Every function reads a `RunResults` and returns sentences (or nothing) whose every number,
name and verdict comes from the recorded values: who leads on which metric, whether the lead
exceeds its 95% interval, the train-test gap, how the embeddings compare with the floors, the
training budgets, what was pushed and why not. A sentence whose values are missing is left out.
"""
from typing import List, Optional, Sequence, Tuple

from components.evaluator import confidence
from models.architectures import title
from pipeline import report_distances
from pipeline import report_recipe
from pipeline import report_tables
from pipeline.report_data import ModelResults, RunResults, get_path
from pipeline.report_tables import metric_text, num, pct

# A train-test accuracy gap (fraction) above this is called a sign of overfitting.
OVERFITTING_GAP = 0.10
# The headline comparisons: (metrics key, label, shown as a percentage).
HEADLINE_KEYS = (('test_accuracy', 'test accuracy', True), ('map', 'retrieval mAP (L2)', False))


def budget(run: RunResults) -> str:
  """Whether the models had the same training budget, from their histories (the budget as
  run) or settings, and the epochs each reached."""
  if len(run.models) < 2:
    return ''
  budgets = {m.name: report_recipe.model_budget(m) for m in run.models}
  if not all(budgets.values()):
    return ''
  reached = ', '.join(
      f'{m.title} {m.history["epochs_reached"]:.2f}'
      + (f' ({m.history["images_seen"]:,} drawings)' if m.history.get('images_seen') is not None
         else '')
      for m in run.models if m.history.get('epochs_reached') is not None)
  if len(set(budgets.values())) > 1:
    return ('The models had different training budgets ('
            + '; '.join(f'{title(name)}: {text}' for name, text in budgets.items())
            + '), so the comparison is not on equal footing.')
  return (f'Both models had the same training budget, {budgets[run.models[0].name]}'
          + (f'; epochs reached: {reached}.' if reached else '.'))


def _rate_end(model: ModelResults) -> str:
  """'ended at 1.50e-05, 5.0% of the peak 3.00e-04', from the Trainer's history."""
  h = model.history
  last, peak = h.get('last_learning_rate'), h.get('peak_learning_rate')
  if last is None or not peak:
    return ''
  return (f'ended at {report_recipe.rate(last)}, {last / peak:.1%} of the peak '
          f'{report_recipe.rate(peak)}' + (', the end of the schedule' if last <= 1e-3 * peak
                                           else ''))


def learning_rate_end(model: ModelResults) -> str:
  """Where the learning rate ended against its peak."""
  clause = _rate_end(model)
  return f'{model.title}\'s learning rate {clause}.' if clause else ''


def interval_note(run: RunResults) -> str:
  """How the bracketed intervals were computed, from the Evaluator's ci95_method."""
  method = next((m.metrics['ci95_method'] for m in run.models if m.metrics.get('ci95_method')),
                None)
  if not method:
    return ''
  return (f'Brackets: {method["confidence_level"]:.0%} {method["method"].split(" (")[0]} '
          f'intervals ({method["resamples"]} resamples, seed {method["seed"]}) over the drawings '
          'evaluated (accuracy) and over the scored queries (mAP, the gallery held fixed).')


def _better(run: RunResults, key: str) -> Optional[Tuple[ModelResults, ModelResults]]:
  """(better, worse) by `key` when both models have it and they differ, else None."""
  if len(run.models) < 2:
    return None
  values = [(get_path(m.metrics, key), m) for m in run.models[:2]]
  if any(v is None for v, _ in values) or values[0][0] == values[1][0]:
    return None
  ordered = sorted(values, key=lambda vm: -vm[0])
  return ordered[0][1], ordered[1][1]


def lead(run: RunResults, key: str) -> Tuple[Optional[str], Optional[bool]]:
  """(the model ahead on `key`, whether its lead exceeds the 95% interval: the paired interval
  of the difference when there is one, else non-overlapping intervals; None when unknown)."""
  better = _better(run, key)
  if not better:
    return None, None
  row = (run.comparison.get('paired_difference') or {}).get(key) or {}
  if row.get('excludes_zero') is not None:
    return better[0].name, bool(row['excludes_zero'])
  first, second = better[0].metrics.get(f'{key}_ci95'), better[1].metrics.get(f'{key}_ci95')
  if first is None or second is None:
    return better[0].name, None
  return better[0].name, first[0] > second[1]


def _leads(run: RunResults, keys) -> List[str]:
  """Who is ahead on each secondary metric, and whether the two 95% intervals (when recorded)
  separate them: a lead inside overlapping intervals is not a finding."""
  points = []
  for key, label in keys:
    better = _better(run, key)
    if not better:
      continue
    ahead, behind = better
    text = (f'{ahead.title} is ahead of {behind.title} on {label}: '
            f'{metric_text(ahead.metrics, key)} against {metric_text(behind.metrics, key)}')
    high, low = ahead.metrics.get(f'{key}_ci95'), behind.metrics.get(f'{key}_ci95')
    if high and low:
      # Separate intervals of paired outcomes: apart they show a difference; overlapping they
      # settle nothing (a paired interval can still exclude 0).
      text += ('; their separate 95% intervals do not even overlap' if high[0] > low[1] else
               '; their separate 95% intervals overlap, which does not settle it (no paired '
               'interval is computed for this metric)')
    else:
      text += ' (no interval recorded)'
    points.append(text + '.')
  return points


def _paired(run: RunResults, key: str) -> List[str]:
  return [text for k, text in difference_statements(run, with_keys=True) if k == key]


def classification(run: RunResults) -> List[str]:
  """The paired top-1 difference, the top-5 lead against its intervals, chance, the tally."""
  points = (_paired(run, 'test_accuracy')  # A run without intervals: who is ahead, at least.
            or _leads(run, (('test_accuracy', 'test accuracy'),)))
  points += _leads(run, (('test_top5_accuracy', 'top-5 test accuracy'),))
  above = [(m.title, m.metrics['test_accuracy'] / m.metrics['chance_accuracy'])
           for m in run.models
           if m.metrics.get('chance_accuracy') and m.metrics.get('test_accuracy') is not None]
  if above:
    chance = next(m.metrics['chance_accuracy'] for m in run.models
                  if m.metrics.get('chance_accuracy'))
    points.append(f'Chance is {pct(chance)} (one category in {round(1 / chance)}): '
                  + ', '.join(f'{name} is right {times:.1f}x as often' for name, times in above)
                  + '.')
  wins = run.comparison.get('wins') or {}
  if wins and run.comparison.get('models'):
    first, second = run.comparison['models'][:2]
    points.append(f'Over all {sum(wins.values())} compared metrics (ModelComparison, floors '
                  f'excluded), {title(first)} is better on {wins.get(first, 0)}, '
                  f'{title(second)} on {wins.get(second, 0)}, and {wins.get("tie", 0)} are '
                  'tied; most are per-category values, which move together, so this is a '
                  'tally, not a test.')
  return points


def retrieval(run: RunResults) -> List[str]:
  """The paired mAP difference, P@10, the embeddings against the floors, cosine against L2."""
  points = _paired(run, 'map') or _leads(run, (('map', 'retrieval mAP (L2)'),))
  points += _leads(run, (('retrieval.l2.precision_at_k.10', 'precision at 10 (L2)'),))
  for m in run.models:
    raw = get_path(m.metrics, 'floors.raw_pixels_map')
    random_map = get_path(m.metrics, 'floors.random_map')
    if m.metrics.get('map') is not None and random_map:
      text = (f'{m.title}\'s fc_1 embeddings retrieve at mAP {num(m.metrics["map"])}, '
              f'{m.metrics["map"] / random_map:.1f}x the random ranking ({num(random_map)})')
      if raw:
        text += (f' and {m.metrics["map"] / raw:.1f}x raw pixels ({num(raw)})'
                 if m.metrics['map'] > raw else
                 f'; raw pixels ({num(raw)}) do as well or better')
      points.append(text + '.')
  return points + report_distances.distances(run)


def per_category(run: RunResults, categories: Sequence[str] = ()) -> List[str]:
  """The categories both models find hardest and easiest (`categories`: best mean accuracy
  first), and each model's best and worst retrieved and most confused categories."""
  points = []
  if len(categories) >= 2:
    ends = min(3, len(categories) // 2)
    points.append(f'Easiest for the models (mean test accuracy): {", ".join(categories[:ends])}; '
                  f'hardest: {", ".join(reversed(categories[-ends:]))}.')
  for m in run.models:
    per_ap = get_path(m.metrics, 'retrieval.l2.per_category_ap') or {}
    scored = sorted((v, c) for c, v in per_ap.items() if v is not None)
    if len(scored) >= 2:
      points.append(f'{m.title} retrieves {scored[-1][1]} best (AP {num(scored[-1][0])}) and '
                    f'{scored[0][1]} worst (AP {num(scored[0][0])}).')
    pairs = report_tables.confusion_pairs(m, 3)
    if pairs:
      listed = '; '.join(f'{t} taken for {p} ({n} of {total})' for t, p, n, total in pairs)
      points.append(f'{m.title}\'s most frequent confusions on the test split: {listed}.')
  return points


def training_behaviour(run: RunResults) -> List[str]:
  """The train-test gaps, the budget and what it allowed, the loss over the last epochs, where
  the learning rate ended."""
  points = []
  for m in run.models:
    train, test = m.metrics.get('train_accuracy'), m.metrics.get('test_accuracy')
    if train is None or test is None:
      continue
    gap = train - test
    text = (f'{m.title} recognises {pct(train)} of training drawings and {pct(test)} of the '
            f'unseen test drawings, a gap of {gap * 100:+.1f} points')
    reached = m.history.get('epochs_reached')
    if reached is not None and reached <= 1:
      text += (f': in {reached:.2f} epochs no training drawing was seen twice, so training '
               'drawings were nearly as new to it as test drawings' if gap <= OVERFITTING_GAP
               else f', more than {OVERFITTING_GAP * 100:.0f} points although in {reached:.2f} '
               'epochs no training drawing was seen twice: not memorisation')
    elif gap > OVERFITTING_GAP:
      text += (f', above the {OVERFITTING_GAP * 100:.0f} points this report reads as '
               'over-fitting: it fits the drawings it was trained on better than its categories '
               'in general')
    else:
      text += f', below the {OVERFITTING_GAP * 100:.0f} points this report reads as over-fitting'
    points.append(text + '.')
  shared = budget(run)
  if shared:
    points.append(shared)
  for m in run.models:
    losses = (m.history.get('history') or {}).get('loss') or []
    if len(losses) >= 2 and losses[-2]:
      change = losses[-1] / losses[-2] - 1
      points.append(f'{m.title}\'s mean training loss went from {losses[-2]:.3f} in epoch '
                    f'{len(losses) - 1} to {losses[-1]:.3f} in epoch {len(losses)} '
                    f'({change:+.1%}).')
  stopped = [m for m in run.models if m.history.get('stopped_by_time_budget')]
  if len(stopped) == len(run.models) > 1:
    points.append('Both were stopped by the time budget, before their epoch or step limits.')
  else:
    for m in stopped:
      reached = m.history.get('epochs_reached')
      points.append(f'{m.title} was stopped by its time budget'
                    + (f' after {reached:.2f} epochs.' if reached is not None else '.'))
  ends = [_rate_end(m) for m in run.models]
  if len(ends) == 2 and ends[0] and ends[0] == ends[1]:
    points.append(f'Both learning rates {ends[0]}.')
  else:
    points += [learning_rate_end(m) for m in run.models if learning_rate_end(m)]
  return points


def difference_statements(run: RunResults, with_keys: bool = False) -> List:
  """Whether each headline difference between the two models exceeds its uncertainty: from
  ModelComparison's paired interval when present, else from the two models' own intervals
  (with_keys: (metrics key, statement) pairs)."""
  if len(run.models) < 2:
    return []
  paired = run.comparison.get('paired_difference') or {}
  points = []
  for key, label, percent in HEADLINE_KEYS:
    row = paired.get(key) or {}
    if row.get('ci95') is not None and row.get('difference') is not None:
      points.append((key, _paired_statement(run, row, label, percent)))
      continue
    values = [(m, m.metrics.get(key), m.metrics.get(f'{key}_ci95')) for m in run.models[:2]]
    if any(v is None or ci is None for _, v, ci in values):
      continue  # No interval recorded (a run made before schema 3).
    (a, _, ia), (b, _, ib) = sorted(values, key=lambda x: -x[1])
    bounds = lambda ci: confidence.format_bounds(ci, percent)
    if ia[0] > ib[1]:
      points.append((key, f'On {label}, {a.title}\'s 95% interval {bounds(ia)} lies entirely '
                    f'above {b.title}\'s {bounds(ib)}: the difference exceeds the sampling '
                    'uncertainty of this test set.'))
    else:
      points.append((key, f'On {label}, the 95% intervals of {a.title} {bounds(ia)} and {b.title} '
                    f'{bounds(ib)} overlap: they do not show that the models differ.'))
  return points if with_keys else [text for _, text in points]


def _paired_statement(run: RunResults, row, label: str, percent: bool) -> str:
  first, second = (title(name) for name in run.comparison['models'][:2])
  difference = (f'{row["difference"] * 100:+.1f} points' if percent
                else f'{row["difference"]:+.3f}')
  text = (f'{label[0].upper() + label[1:]}, {first} minus {second}: {difference}, 95% paired '
          f'bootstrap interval {confidence.format_bounds(row["ci95"], percent, signed=True)} '
          f'over {row["units"]} {"test drawings" if percent else "queries"}; ')
  if row['excludes_zero']:
    leader = first if row['difference'] > 0 else second
    return text + (f'the interval excludes 0, so {leader}\'s lead is larger than what the '
                   'choice of test drawings explains.')
  return text + ('the interval includes 0, so this test set does not tell the two models apart '
                 f'on {label}.')


def push_statement(run: RunResults, thresholds_too: bool = True) -> str:
  """Which models were pushed, the blessing thresholds (unless the text states them
  elsewhere), and the checks an unpushed model failed, from the Evaluators' blessing
  sections."""
  pushed = [m.title for m in run.models if m.pushed_to]
  text = f'Pushed to the model registry: {", ".join(pushed) if pushed else "none"}.'
  thresholds = (run.models[0].metrics.get('thresholds') or {}) if thresholds_too else {}
  if thresholds.get('min_test_accuracy') is not None and thresholds.get('min_map') is not None:
    drops = [f'{label} more than {shown(thresholds[key])} below'
             for key, label, shown in (('max_accuracy_drop', 'test accuracy', pct),
                                       ('max_map_drop', 'mAP', num))
             if thresholds.get(key) is not None]
    text += (f' Blessing thresholds (TFMA validation): test accuracy >= '
             f'{pct(thresholds["min_test_accuracy"])}, mAP >= {num(thresholds["min_map"])}'
             + (f', and neither {" nor ".join(drops)} the baseline, the newest model of the '
                'same Trainer blessed before' if drops else '') + '.')
    baselines = [m.title for m in run.models if m.metrics.get('baseline_model')]
    if drops:
      text += (f' Compared with a baseline: {", ".join(baselines)}.' if baselines else
               ' No model had a blessed baseline yet (first blessing: change thresholds '
               'rubber-stamped).')
  for m in run.models:
    failed = [c for c in get_path(m.metrics, 'blessing.checks', []) if not c.get('passed')]
    if failed and not m.pushed_to:
      text += f' {m.title} failed {", ".join(_check_text(c) for c in failed)}.'
  return text


def _check_text(check) -> str:
  value, threshold = check.get('value'), check.get('threshold')
  if value is None or threshold is None:
    return check['name']
  shown = pct if 'accuracy' in check['name'] else num
  if check.get('kind') == 'change':
    return f'{check["name"]} (change {shown(value)} < {shown(threshold)})'
  return f'{check["name"]} ({shown(value)} < {shown(threshold)})'
