"""The experiment report of one pipeline run, built from what ML Metadata recorded.

  quickdraw-tfx report                        # the latest run of the default profile
  quickdraw-tfx report --profile smoke --output-dir outputs-smoke --run-id <id>

Writes `report.md` (figures beside it in `figures/`), a self-contained `report.html`
(figures embedded) and, when Chromium is installed, `report.pdf` printed from the HTML, to
`<output_dir>/reports/<run id>/` unless `--out` says otherwise. Every number comes from the
run's artifacts: the Evaluator's metrics, the Trainers' histories and exported models, the
ExampleGen's manifest and examples, the Pushers' model cards, and the executions' times and
lineage; nothing is recomputed here except the drawings' pictures and the models' layer counts.

The parts: report_data gathers the run; report_tables, report_architecture, report_recipe,
report_development, report_findings (with report_distances), report_conclusions and
report_deliverables turn it into tables and statements; report_figures (with report_dag,
report_drawing_figures and report_category_figures) draws it; report_render fills the
templates; report_pdf prints.
"""
import argparse
import os
import re
import sys
from typing import Optional, Tuple

from pipeline import config as config_lib
from pipeline import report_data
from pipeline import report_figures
from pipeline import report_pdf
from pipeline import report_render

REPORT_MD = 'report.md'
REPORT_HTML = 'report.html'
REPORT_PDF = 'report.pdf'
FIGURES = 'figures'


def write_report(run: report_data.RunResults, out_dir: str,
                 pdf: bool = True) -> Tuple[str, str]:
  """Writes report.md, figures/, report.html and (with Chromium, unless `pdf` is False)
  report.pdf of `run` into `out_dir`; returns the Markdown's and the HTML's paths."""
  figures = report_figures.draw(run, out_dir, FIGURES)
  browser = report_pdf.browser() if pdf else None
  state = {'file': REPORT_PDF, 'printed': bool(browser),
           'how': report_pdf.how_to_print(REPORT_HTML, REPORT_PDF),
           'problem': ('' if browser else 'Chromium was not found' if pdf else
                       'no PDF was asked for')}
  md_path, html_path = _write(run, figures, out_dir, state)
  pdf_path = os.path.join(out_dir, REPORT_PDF)
  if browser:
    problem = report_pdf.print_pdf(html_path, pdf_path, browser)
    if problem:  # The pages say there is no PDF, and why.
      state.update(printed=False, problem=problem)
      _write(run, figures, out_dir, state)
  elif os.path.exists(pdf_path):
    os.remove(pdf_path)  # An earlier report's PDF would not match these pages.
  return md_path, html_path


def _write(run: report_data.RunResults, figures, out_dir: str, pdf_state) -> Tuple[str, str]:
  text, page = report_render.render(run, figures, out_dir, pdf_state)
  md_path = os.path.join(out_dir, REPORT_MD)
  with open(md_path, 'w') as f:
    f.write(text)
  html_path = os.path.join(out_dir, REPORT_HTML)
  with open(html_path, 'w') as f:
    f.write(page)
  return md_path, html_path


def default_out_dir(config: config_lib.PipelineConfig, run_id: str) -> str:
  return os.path.join(config.output_dir, 'reports', re.sub(r'[^\w.-]+', '_', run_id))


def build(config: config_lib.PipelineConfig, run_id: Optional[str] = None,
          out_dir: Optional[str] = None) -> Tuple[str, str]:
  """Gathers run `run_id` (default: the latest) of `config`'s pipeline and writes its report."""
  run = report_data.gather(config.metadata_path, config.pipeline_name, run_id)
  return write_report(run, out_dir or default_out_dir(config, run.run_id))


def pipeline_in(config: config_lib.PipelineConfig) -> str:
  """The pipeline whose runs the output folder holds: `config`'s when its store is there, else
  the only one there is (a smoke or spec run's folder reported without --profile)."""
  if os.path.exists(config.metadata_path):
    return config.pipeline_name
  stores = os.path.join(config.output_dir, 'metadata')
  found = sorted(name for name in (os.listdir(stores) if os.path.isdir(stores) else [])
                 if os.path.exists(os.path.join(stores, name, 'metadata.sqlite')))
  if len(found) > 1:
    raise LookupError(f'{stores} holds the runs of several pipelines ({", ".join(found)}); '
                      'say which with --profile or --config')
  return found[0] if found else config.pipeline_name


def register(subparsers) -> None:
  """The `report` subcommand of quickdraw-tfx (pipeline/cli.py)."""
  parser = subparsers.add_parser(
      'report', help='write the experiment report of a run (Markdown, HTML, PDF)',
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--profile', choices=config_lib.profile_names(),
                      help='whose pipeline (default: the config file\'s, else default)')
  parser.add_argument('--config', metavar='YAML', help='the settings file the run used')
  parser.add_argument('--output-dir', help='the run\'s output folder (default: outputs/)')
  parser.add_argument('--run-id', help='a pipeline run id (default: the latest run)')
  parser.add_argument('--out', help='report folder (default: <output-dir>/reports/<run id>)')
  parser.set_defaults(func=report_command)


def report_command(args) -> int:
  try:
    config = config_lib.load(args.profile, args.config)
  except ValueError as e:
    print(f'quickdraw-tfx report: error: {e}', file=sys.stderr)
    return 2
  if args.output_dir:
    config = config.replace(output_dir=args.output_dir)
  try:
    if not (args.profile or args.config):
      config = config.replace(pipeline_name=pipeline_in(config))
    md_path, html_path = build(config, args.run_id, args.out)
  except (LookupError, FileNotFoundError) as e:
    print(f'quickdraw-tfx report: {e}', file=sys.stderr)
    return 1
  pdf_path = os.path.join(os.path.dirname(html_path), REPORT_PDF)
  print(f'Report: {os.path.abspath(html_path)}\n        {os.path.abspath(md_path)}'
        + (f'\n        {os.path.abspath(pdf_path)}' if os.path.exists(pdf_path) else ''))
  return 0
