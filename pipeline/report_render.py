"""The report's pages: a `RunResults` and its figures through the Jinja2 templates.

`render` fills templates/report.md.j2 with the run's tables (report_tables) and statements
(report_findings), then renders the same Markdown, every figure embedded as a data URI, into
templates/report.html.j2: a page that stands alone.
"""
import base64
import os
import re
import time
from typing import Any, Dict, Tuple

import jinja2
import markdown

from pipeline import report_findings
from pipeline import report_tables
from pipeline.report_category_figures import heatmap_note
from pipeline.report_data import RunResults, get_path

MARKDOWN_TEMPLATE = 'report.md.j2'
HTML_TEMPLATE = 'report.html.j2'
DATA_CREDIT = ('Drawings: Google\'s Quick, Draw! dataset, "This data made available by Google, '
               'Inc." under CC BY 4.0.')

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader('pipeline', 'templates'), trim_blocks=True, lstrip_blocks=True,
    keep_trailing_newline=False, undefined=jinja2.StrictUndefined,
    autoescape=jinja2.select_autoescape(['html.j2'], default_for_string=False))


def _shown_source(source: str) -> str:
  """A URL as given; a local folder by its last two names (not the writing machine's path)."""
  if '://' in source or not os.path.isabs(source):
    return f'`{source}`'
  return f'a local folder `.../{"/".join(os.path.normpath(source).split(os.sep)[-2:])}`'


def _shown_store(metadata_path: str) -> str:
  """The store's path below the output directory (metadata/<pipeline>/metadata.sqlite): the
  report names no folder of the machine that wrote it."""
  return '/'.join(os.path.normpath(metadata_path).split(os.sep)[-3:])


def _comparison(run: RunResults) -> str:
  """ModelComparison's summary and headline table, without its headings; the table of every
  metric stays in the artifact, named by its path in the run's output directory."""
  if not run.comparison_md:
    return ''
  text = run.comparison_md.split('\n## Every metric')[0]
  kept = [line for line in text.strip().splitlines() if not line.startswith('#')]
  uri = run.nodes['ModelComparison'].outputs['comparison'][0].uri
  # A relative URI is relative to the folder the run started in, as the store's path is.
  absolute = os.path.abspath(uri)
  if absolute.startswith(run.output_dir + os.sep):
    uri = os.path.relpath(absolute, run.output_dir)
  return '\n'.join(kept + ['', f'Every metric, side by side: `{uri}/comparison.md` in the run\'s '
                               'output directory.'])


def _measures(run: RunResults) -> Dict[str, Any]:
  first = run.models[0].metrics
  return {'train_examples': first.get('train_examples'),
          'test_examples': first.get('test_examples'),
          'queries': first.get('map_queries'), 'embedding_dim': first.get('embedding_dim')}


def _model(model) -> Dict[str, Any]:
  categories = len(get_path(model.metrics, 'classification.categories') or ())
  return {'name': model.name,
          'test_accuracy': report_tables.pct(model.metrics.get('test_accuracy')),
          'train_accuracy': report_tables.pct(model.metrics.get('train_accuracy')),
          'map': report_tables.num(model.metrics.get('map')),
          'per_category': report_tables.per_category(model),
          'confusions': report_tables.confusions(model),
          'heatmap_note': heatmap_note(categories) if categories else ''}


def context(run: RunResults) -> Dict[str, Any]:
  """What the Markdown template reads, but the figures."""
  floors = report_tables.floors(run)
  sample = {key: run.sampling.get(key, '?')
            for key in ('num_categories', 'train_per_category', 'test_per_category', 'seed')}
  return {
      'run': run, 'credit': DATA_CREDIT,
      'generated': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'store': _shown_store(run.metadata_path),
      'source': _shown_source(run.sampling.get('source', '?')), 'sample': sample,
      'models': [_model(m) for m in run.models],
      'headline': report_tables.headline(run),
      'interval_note': report_findings.interval_note(run),
      'floors': {'random_map': (None if floors['random_map'] is None
                                else report_tables.num(floors['random_map'])),
                 'raw_pixels_dim': floors['raw_pixels_dim'],
                 'num_categories': run.models[0].metrics.get('num_categories',
                                                             sample['num_categories'])},
      'comparison': _comparison(run),
      'discussion': report_findings.discussion(run),
      'conclusions': report_findings.conclusions(run),
      'measures': _measures(run),
      'sampling': report_tables.sampling(run.manifest),
      'sampling_summarised': report_tables.sampling_summarised(run.manifest),
      'training_settings': report_tables.training_settings(run),
      'budget': report_findings.budget(run),
      'training_run': report_tables.training_run(run),
      'wall_time': report_tables.wall_time(run),
  }


def _markdown(page: Dict[str, Any], figures: Dict[str, str]) -> str:
  text = _ENVIRONMENT.get_template(MARKDOWN_TEMPLATE).render(page, figures=figures)
  # Parts the run lacks leave blank lines behind: one separates blocks.
  return re.sub(r'\n{3,}', '\n\n', text).strip() + '\n'


def render_markdown(run: RunResults, figures: Dict[str, str]) -> str:
  """The report in Markdown; `figures` maps a figure's name to its path."""
  return _markdown(context(run), figures)


def data_uri(path: str) -> str:
  with open(path, 'rb') as f:
    return f'data:image/png;base64,{base64.b64encode(f.read()).decode()}'


def render(run: RunResults, figures: Dict[str, str], out_dir: str) -> Tuple[str, str]:
  """(Markdown, HTML) of the report; `figures` are paths relative to `out_dir`, which the
  Markdown links and the HTML embeds, so that the page stands alone."""
  page = context(run)
  text = _markdown(page, figures)
  embedded = {name: data_uri(os.path.join(out_dir, path)) for name, path in figures.items()}
  body = markdown.markdown(_markdown(page, embedded), extensions=['tables', 'md_in_html'])
  html = _ENVIRONMENT.get_template(HTML_TEMPLATE).render(
      title=f'quickdraw-tfx run {run.run_id}', body=body)
  return text, html + '\n'
