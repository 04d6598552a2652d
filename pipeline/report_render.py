"""The report's pages: a `RunResults` and its figures through the Jinja2 templates.

`render` fills templates/report.md.j2 (Abstract, Introduction, Development, Results and
discussion, Conclusions, Deliverables, Appendix) with the run's tables and statements, then
renders the same Markdown, every figure embedded as a data URI, into templates/report.html.j2:
a page that stands alone and prints to PDF without splitting its figures.
"""
import base64
import datetime
import os
import re
import time
from typing import Any, Dict, Tuple

import jinja2
import markdown

from pipeline import report_architecture
from pipeline import report_category_figures
from pipeline import report_conclusions
from pipeline import report_deliverables
from pipeline import report_development
from pipeline import report_findings
from pipeline import report_recipe
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
  """A URL as given; a local folder by its last two names (not the writing machine's path);
  '' when the manifest names none."""
  if not source:
    return ''
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


def _model(model) -> Dict[str, Any]:
  categories = len(get_path(model.metrics, 'classification.categories') or ())
  return {'name': model.name, 'title': model.title,
          'per_category': report_tables.per_category(model),
          'confusions': report_tables.confusions(model),
          'layers': report_architecture.layers(model),
          'heatmap_note': heatmap_note(categories) if categories else ''}


def _introduction(run: RunResults) -> Dict[str, Any]:
  """The run's values the Introduction's paragraphs name."""
  first = run.models[0].metrics
  queries = first.get('map_queries')
  return {'num_categories': first.get('num_categories', run.sampling.get('num_categories')),
          'embedding_dim': first.get('embedding_dim'), 'queries': queries,
          'gallery': first.get('test_examples'),
          'random_map': report_tables.floors(run)['random_map'],
          'titles': [m.title for m in run.models],
          'residual': [m.title for m in run.models if m.architecture.get('residual_additions')],
          'plain': [m.title for m in run.models
                    if m.architecture.get('rows') and not m.architecture['residual_additions']]}


def _started(run_id: str) -> str:
  """'2026-12-07 13:48:35' from a local run's id (an ISO time); '' for other ids."""
  try:
    return datetime.datetime.fromisoformat(run_id).strftime('%Y-%m-%d %H:%M:%S')
  except ValueError:
    return ''


def context(run: RunResults, pdf: Dict[str, Any] = None) -> Dict[str, Any]:
  """What the Markdown template reads, but the figures; `pdf` says whether a PDF is printed
  beside the page (report_pdf) and how to print one."""
  sample = {key: run.sampling.get(key)
            for key in ('num_categories', 'train_per_category', 'test_per_category', 'seed')}
  source = _shown_source(run.sampling.get('source') or '')
  interval_note = report_findings.interval_note(run)
  order = report_category_figures.category_order(run.models)
  code = next((m.card.get('code_version') for m in run.models if m.card.get('code_version')),
              None) or {}
  return {
      'run': run, 'credit': DATA_CREDIT,
      'generated': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'store': _shown_store(run.metadata_path), 'source': source, 'sample': sample,
      'models': [_model(m) for m in run.models],
      'abstract': {'numbers': report_conclusions.abstract_numbers(run),
                   'budget': report_conclusions.abstract_budget(run),
                   'verdict': report_conclusions.verdict(run)},
      'started': _started(run.run_id),
      'intro': _introduction(run), 'interval_note': interval_note,
      'activity': report_development.activity(run, source),
      'executions': report_development.components_count(run),
      'data_points': report_development.data_construction(run, source),
      'architecture': report_architecture.summary(run),
      'architecture_points': report_architecture.statements(run),
      'recipe': report_recipe.recipe(run),
      'recipe_points': report_recipe.statements(run),
      'protocol': report_development.evaluation_protocol(run, interval_note),
      'classification': report_tables.classification(run),
      'classification_paired': report_tables.paired(run, 'test_accuracy'),
      'classification_points': report_findings.classification(run),
      'retrieval': report_tables.retrieval(run),
      'retrieval_paired': report_tables.paired(run, 'map'),
      'retrieval_points': report_findings.retrieval(run),
      'category_points': report_findings.per_category(run, order),
      'training_points': report_findings.training_behaviour(run),
      'conclusions': report_conclusions.conclusions(run),
      'pushed': report_deliverables.pushed(run),
      'signatures': report_deliverables.signatures(run),
      'code_commit': (code.get('git_commit') or '')[:12],
      'code_dirty': bool(code.get('git_dirty')),
      'pdf': pdf or {},
      'comparison': _comparison(run),
      'sampling': report_tables.sampling(run.manifest),
      'sampling_summarised': report_tables.sampling_summarised(run.manifest),
      'chosen_categories': run.manifest.get('chosen_categories') or [],
      'training_settings': report_tables.training_settings(run),
      'wall_time': report_tables.wall_time(run),
  }


def _markdown(page: Dict[str, Any], figures: Dict[str, str]) -> str:
  text = _ENVIRONMENT.get_template(MARKDOWN_TEMPLATE).render(page, figures=figures)
  # Parts the run lacks leave blank lines behind: one separates blocks.
  return re.sub(r'\n{3,}', '\n\n', text).strip() + '\n'


def render_markdown(run: RunResults, figures: Dict[str, str],
                    pdf: Dict[str, Any] = None) -> str:
  """The report in Markdown; `figures` maps a figure's name to its path."""
  return _markdown(context(run, pdf), figures)


def data_uri(path: str) -> str:
  with open(path, 'rb') as f:
    return f'data:image/png;base64,{base64.b64encode(f.read()).decode()}'


def render(run: RunResults, figures: Dict[str, str], out_dir: str,
           pdf: Dict[str, Any] = None) -> Tuple[str, str]:
  """(Markdown, HTML) of the report; `figures` are paths relative to `out_dir`, which the
  Markdown links and the HTML embeds, so that the page stands alone."""
  page = context(run, pdf)
  text = _markdown(page, figures)
  embedded = {name: data_uri(os.path.join(out_dir, path)) for name, path in figures.items()}
  body = markdown.markdown(_markdown(page, embedded),
                           extensions=['tables', 'md_in_html', 'fenced_code'])
  html = _ENVIRONMENT.get_template(HTML_TEMPLATE).render(
      title=f'quickdraw-tfx run {run.run_id}', body=body)
  return text, html + '\n'
