"""The training recipe and budget as each Trainer ran them: a sentence per model and a table,
one column per model.

Values come from the Trainer's history.json (what it did: optimizer, schedule, peak and last
learning rate, precision, the budget and the steps, drawings and epochs it allowed, the rate
at each epoch's end) and, where an older run's history lacks a key, from its custom_config
(what it was asked to do). A row or clause no model has a value for is left out.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence

from pipeline.report_data import ModelResults, RunResults
from pipeline.report_tables import Table

# Per-epoch learning rates listed in full up to this many epochs; beyond, the ends.
RATES_LISTED = 8
_UNITS = {'epochs': 'epoch', 'images': 'image', 'minutes': 'minute'}


def rate(value: float) -> str:
  return f'{value:.2e}'


def amount(value: float) -> str:
  """'100,000' for 100000 or 100000.0, '2.5' for 2.5."""
  return f'{int(value):,}' if float(value).is_integer() else f'{value:,g}'


def _plural(value: float, unit: str) -> str:
  return f'{amount(value)} {unit}{"" if value == 1 else "s"}'


def budget_text(budget: Dict[str, Any]) -> str:
  """'5 epochs (190 steps)', '100,000 images (3,125 steps)', '35 minutes (at most 62,500
  steps)': the budget and the steps it allowed, when recorded."""
  kind, value = budget.get('kind'), budget.get('value')
  if kind not in _UNITS or value is None:
    return ''
  text = _plural(value, _UNITS[kind])
  steps = budget.get('total_steps')
  if not steps:
    return text
  # A time budget's steps are the most its epoch or image limit allows.
  return text + (f' (at most {steps:,} steps)' if kind == 'minutes' else f' ({steps:,} steps)')


def epoch_rates(model: ModelResults) -> List[float]:
  """The learning rate at each epoch's end (history.json's history['learning_rate'])."""
  curves = model.history.get('history') or {}
  rates = curves.get('learning_rate')
  return [float(r) for r in rates] if isinstance(rates, list) else []


def _rates_cell(rates: Sequence[float]) -> str:
  shown = [rate(r) for r in rates]
  if len(shown) > RATES_LISTED:
    half = RATES_LISTED // 2
    shown = shown[:half] + [f'... ({len(rates) - 2 * half} more)'] + shown[-half:]
  return ', '.join(shown)


def _setting(history_key: Optional[str], training_key: Optional[str],
             show: Callable[[Any], str] = str) -> Callable[[ModelResults], str]:
  """The history's value (what ran), else the Trainer's setting (what was asked)."""
  def cell(model: ModelResults) -> str:
    for source, key in ((model.history, history_key), (model.training, training_key)):
      if key and source.get(key) is not None:
        return show(source[key])
    return ''
  return cell


def _share(fraction: float) -> str:
  return f'{fraction * 100:.3g}%'


def _warmup(model: ModelResults) -> str:
  for source in (model.history, model.training):  # As run, else as asked.
    if source.get('warmup_fraction') is not None:
      fraction = source['warmup_fraction']
      return f'{_share(fraction)} of the budget' if fraction else 'none'
  epochs = model.training.get('warmup_epochs')  # Settings of runs before warmup_fraction.
  if epochs is None:
    return ''
  return _plural(epochs, 'epoch') if epochs else 'none'


def model_budget(model: ModelResults) -> str:
  """The budget a Trainer ran with: its history's (kind, value, steps), else its settings'
  ('5 epochs', '2,000 images', '35 minutes (at most 20 epochs)'); '' when neither says."""
  if isinstance(model.history.get('budget'), dict):
    text = budget_text(model.history['budget'])
    if text:
      return text
  return settings_budget(model.training)


def settings_budget(t: Dict[str, Any]) -> str:
  """The budget a TrainingConfig's settings ask for ('' when they name none)."""
  epochs, images = t.get('epochs') or 0, t.get('training_images') or 0
  limits = [_plural(epochs, 'epoch')] if epochs >= 1 else []
  if images:  # The fewer of the two ends training; the settings do not say which.
    limits.append(_plural(images, 'image'))
  if t.get('time_budget_minutes'):
    return (f'{_plural(t["time_budget_minutes"], "minute")}'
            + (f' (at most {" or ".join(limits)})' if limits else ''))
  return ' or '.join(limits)


def _augmentation(model: ModelResults) -> str:
  t = model.training
  if t.get('augment') is None:
    return ''
  if not t['augment']:
    return 'none'
  return (f'shift {t.get("augment_shift", 0):g}, scale {t.get("augment_scale", 0):g}, '
          f'rotation {t.get("augment_rotation_degrees", 0):g} degrees')


def _steps(model: ModelResults) -> str:
  steps = model.history.get('steps')
  if steps is None:
    return ''
  planned = (model.history.get('budget') or {}).get('total_steps')
  return f'{steps:,}' + (f' of {planned:,}' if planned else '')


# (row label, cell of a model): the recipe, then the budget and what it allowed.
ROWS = (
    ('optimizer', _setting('optimizer', 'optimizer')),
    ('learning-rate schedule', _setting('lr_schedule', 'lr_schedule')),
    ('peak learning rate', _setting('peak_learning_rate', 'learning_rate', rate)),
    ('warm-up', _warmup),
    ('label smoothing', _setting('label_smoothing', 'label_smoothing', lambda v: f'{v:g}')),
    ('weight decay', _setting(None, 'weight_decay', lambda v: f'{v:g}')),
    ('batch size', _setting('batch_size', 'batch_size')),
    ('augmentation', _augmentation),
    ('precision', _setting('precision', 'precision')),
    ('why this precision', _setting('precision_reason', None)),
    ('budget', model_budget),
    ('stopped by the time budget', _setting('stopped_by_time_budget', None,
                                            lambda v: 'yes' if v else 'no')),
    ('training steps', _steps),
    ('drawings trained on', _setting('images_seen', None, lambda v: f'{v:,}')),
    ('epochs reached', _setting('epochs_reached', None, lambda v: f'{v:.2f}')),
    ('training time', _setting('training_seconds', None, lambda v: f'{v / 60:.1f} min')),
    ('images/s (per epoch)', _setting('images_per_second', None,
                                      lambda v: ', '.join(f'{x:.1f}' for x in v))),
    ('learning rate at each epoch end', lambda m: _rates_cell(epoch_rates(m))),
    ('learning rate at the end', _setting('last_learning_rate', None, rate)),
    ('BatchNorm statistics re-estimated on', _setting(
        'batchnorm_recalibration_batches', None,
        lambda v: f'{v} training batches after fitting' if v else 'not re-estimated')),
    ('after fit (BatchNorm re-estimation, export)', _setting('post_fit_seconds', None,
                                                             lambda v: f'{v:.0f} s')),
    ('resumed from step', _setting('resumed_from_step', None,
                                   lambda v: f'{v:,}' if v else 'no resume')),
)


def recipe(run: RunResults) -> Optional[Table]:
  """The recipe and budget of each model as run; None when nothing was recorded."""
  rows = []
  for label, cell in ROWS:
    cells = [cell(m) for m in run.models]
    if any(cells):
      rows.append([label] + cells)
  if not rows:
    return None
  return Table(['training'] + [m.title for m in run.models], rows)


def schedule_text(model: ModelResults) -> str:
  """How the learning rate moved, in words: the schedule over the budget (models/schedules.py),
  for a Trainer that recorded its warm-up share; else the schedule's name and peak."""
  h, t = model.history, model.training
  name = h.get('lr_schedule') or t.get('lr_schedule')
  peak = h.get('peak_learning_rate', t.get('learning_rate'))
  if not name or peak is None:
    return ''
  warmup = h.get('warmup_fraction')
  if warmup is None:  # A Trainer before budget-wide schedules: its name and peak only.
    return f'a {name} learning-rate schedule with peak {rate(peak)}'
  rise = (f'linear warm-up over the first {_share(warmup)} of the budget to the peak '
          f'{rate(peak)}, then ' if warmup else f'from the peak {rate(peak)}, ')
  if name == 'constant':
    return (f'linear warm-up over the first {_share(warmup)} of the budget, then the peak '
            f'{rate(peak)} to the end' if warmup else f'a constant {rate(peak)}')
  if name == 'linear':
    return rise + 'linear decay to zero at the budget\'s end'
  if name == 'cosine':
    return rise + 'cosine decay to zero at the budget\'s end'
  if name == 'one_cycle':
    return (f'one cycle: from {rate(peak / 25)} up to the peak {rate(peak)} over the first '
            f'{_share(warmup or 0.3)} of the budget, then cosine decay to {rate(peak * 1e-4)} '
            'at the budget\'s end')
  return f'a {name} learning-rate schedule with peak {rate(peak)}'


def _reached(model: ModelResults) -> str:
  """'63 steps on 2,016 drawings (1.68 epochs) in 3.2 min', from the history."""
  h = model.history
  parts = [f'{h["steps"]:,} steps'] if h.get('steps') is not None else []
  if h.get('images_seen') is not None:
    parts.append(f'{h["images_seen"]:,} drawings'
                 + (f' ({h["epochs_reached"]:.2f} epochs)' if h.get('epochs_reached') is not None
                    else ''))
  elif h.get('epochs_reached') is not None:
    parts.append(f'{h["epochs_reached"]:.2f} epochs')
  text = ' on '.join(parts)
  if text and h.get('training_seconds'):
    text += f' in {h["training_seconds"] / 60:.1f} min'
  return text


def _whole_budget(model: ModelResults) -> bool:
  """A budget of epochs or images whose every step ran (a time budget says what it allowed)."""
  b = model.history.get('budget')
  return (isinstance(b, dict) and b.get('kind') in ('epochs', 'images')
          and b.get('total_steps') is not None and model.history.get('steps') == b['total_steps'])


def _epochs_and_time(model: ModelResults) -> str:
  """'2.00 epochs over the 1,200 training drawings, in 9.2 min' (each part when recorded)."""
  h = model.history
  text = f'{h["epochs_reached"]:.2f} epochs' if h.get('epochs_reached') is not None else ''
  if text and h.get('training_examples'):
    text += f' over the {h["training_examples"]:,} training drawings'
  if h.get('training_seconds'):
    text += (', in ' if text else 'in ') + f'{h["training_seconds"] / 60:.1f} min'
  return text


def statements(run: RunResults) -> List[str]:
  """One sentence per model: optimizer, schedule, precision, the budget and what it allowed;
  each clause only when its values were recorded (where the rate ended: the table and 3.4)."""
  points = []
  for m in run.models:
    h, t = m.history, m.training
    clauses = []
    optimizer = h.get('optimizer') or t.get('optimizer')
    if optimizer:
      clauses.append({'adam': 'Adam', 'adamw': 'AdamW', 'sgd': 'SGD with Nesterov momentum 0.9'}
                     .get(optimizer, optimizer))
    schedule = schedule_text(m)
    if schedule:
      clauses.append(schedule)
    if h.get('precision'):
      clauses.append(f'computed in {h["precision"]}')
    text = f'{m.title}: ' + '; '.join(clauses) if clauses else ''
    budget, reached = model_budget(m), _reached(m)
    if budget or reached:
      if budget and reached and _whole_budget(m) and _epochs_and_time(m):
        allowed = f'it trained its whole budget, {budget}: {_epochs_and_time(m)}'
      else:
        allowed = (f'its budget, {budget}, allowed {reached}' if budget and reached else
                   f'its budget: {budget}' if budget else f'it trained {reached}')
      if h.get('stopped_by_time_budget'):
        allowed += ' (stopped by the time budget)'
      text = (text + '. ' + allowed[0].upper() + allowed[1:]) if text else f'{m.title}: {allowed}'
    if text:
      points.append(text + '.')
  return points
