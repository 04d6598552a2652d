"""The experiment report of one pipeline run, built from what ML Metadata recorded.

  quickdraw-tfx report                        # the latest run of the default profile
  quickdraw-tfx report --profile smoke --output-dir outputs-smoke --run-id <id>

Writes `report.md` (figures beside it in `figures/`) and a self-contained `report.html`
(figures embedded) to `<output_dir>/reports/<run id>/` unless `--out` says otherwise. Every
number comes from the run's artifacts: the Evaluator's metrics, the Trainers' histories, the
ExampleGen's manifest and examples, and the executions' times; nothing is recomputed here
except the drawings' pictures.

The parts: report_data gathers the run, report_tables and report_findings turn it into tables
and statements, report_figures draws it, report_render fills the templates.
"""
import argparse
import os
import re
import sys
from typing import Optional, Tuple

from pipeline import config as config_lib
from pipeline import report_data
from pipeline import report_figures
from pipeline import report_render

REPORT_MD = 'report.md'
REPORT_HTML = 'report.html'
FIGURES = 'figures'


def write_report(run: report_data.RunResults, out_dir: str) -> Tuple[str, str]:
  """Writes report.md, figures/ and report.html of `run` into `out_dir`; returns both paths."""
  figures = report_figures.draw(run, out_dir, FIGURES)
  text, page = report_render.render(run, figures, out_dir)
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


def register(subparsers) -> None:
  """The `report` subcommand of quickdraw-tfx (pipeline/cli.py)."""
  parser = subparsers.add_parser(
      'report', help='write the experiment report of a run (Markdown + HTML)',
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
    md_path, html_path = build(config, args.run_id, args.out)
  except (LookupError, FileNotFoundError) as e:
    print(f'quickdraw-tfx report: {e}', file=sys.stderr)
    return 1
  print(f'Report: {os.path.abspath(html_path)}\n        {os.path.abspath(md_path)}')
  return 0
