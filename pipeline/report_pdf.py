"""report.pdf beside report.html, printed by headless Chromium when the machine has it.

Chromium lays the page out exactly as a reader's browser does, and the page's print rules
(templates/report.html.j2) keep figures, table rows and headings from being split across
pages. Without Chromium the report says how to print one instead.
"""
import os
import shutil
import subprocess
import tempfile
from typing import Optional

# Debian's package, other distributions' and Google's builds.
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')
# Enough for a page of a dozen embedded figures on a busy 2-core machine.
PRINT_SECONDS = 180


def browser() -> Optional[str]:
  """The first Chromium on PATH, or None."""
  return next((path for path in map(shutil.which, BROWSERS) if path), None)


def command(html_path: str, pdf_path: str, executable: str = 'chromium') -> list:
  """The headless print command (also what the report tells a reader to run)."""
  return [executable, '--headless', '--disable-gpu', '--no-pdf-header-footer',
          f'--print-to-pdf={pdf_path}', html_path]


def how_to_print(html_name: str, pdf_name: str) -> str:
  """The command a reader runs in the report's folder to make the PDF."""
  return ' '.join(command(html_name, pdf_name)[:-1] + [html_name])


def print_pdf(html_path: str, pdf_path: str, executable: str) -> str:
  """Prints `html_path` to `pdf_path`; returns '' on success, else why it failed."""
  if os.path.exists(pdf_path):
    os.remove(pdf_path)
  with tempfile.TemporaryDirectory(prefix='report-pdf-') as profile:
    # No sandbox: it needs user namespaces, which containers and root often lack; the page is
    # the report's own file. A throwaway profile keeps the user's browser untouched.
    args = command('file://' + os.path.abspath(html_path), os.path.abspath(pdf_path),
                   executable)
    args[1:1] = ['--no-sandbox', f'--user-data-dir={profile}', '--virtual-time-budget=10000']
    try:
      done = subprocess.run(args, capture_output=True, text=True, timeout=PRINT_SECONDS,
                            check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      return f'{os.path.basename(executable)} did not print: {type(e).__name__}'
  if done.returncode or not os.path.exists(pdf_path) or not os.path.getsize(pdf_path):
    last = (done.stderr.strip().splitlines() or [''])[-1]
    return f'{os.path.basename(executable)} exited with {done.returncode}: {last}'
  return ''
