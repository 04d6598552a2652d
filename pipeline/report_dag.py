"""The pipeline's DAG as it ran, from ML Metadata: components, artifacts and the events between.

`lineage` turns the run's executions (their input and output events) into a graph whose nodes
are components and artifacts; `figure_dag` draws it top to bottom with matplotlib (no graphviz
needed). The outputs nothing in the run consumed (Transform's statistics, the Trainers' logs)
are drawn as one box under their producer, so the data flow stays readable.
"""
import dataclasses
from typing import Dict, List, Tuple

from pipeline.report_category_figures import pyplot, save

COMPONENT, ARTIFACT = 'component', 'artifact'


@dataclasses.dataclass
class Graph:
  kinds: Dict[str, str]  # node -> COMPONENT or ARTIFACT
  labels: Dict[str, str]
  edges: List[Tuple[str, str]]
  cached: List[str]  # Components served from the cache.

  def predecessors(self, node: str) -> List[str]:
    return [a for a, b in self.edges if b == node]

  def successors(self, node: str) -> List[str]:
    return [b for a, b in self.edges if a == node]


def _label(artifact, key: str) -> str:
  """The output key, with the artifact's type when ML Metadata gave one that says more
  ('model_run' and ModelRun; 'examples' alone)."""
  name = (getattr(artifact, 'type', '') or '').split('.')[-1]
  return f'{key}\n({name})' if name and name.lower() != key.replace('_', '') else key


def lineage(nodes) -> Graph:
  """The run's components and artifacts; an edge per output and per input event."""
  kinds, labels, edges, cached = {}, {}, [], []
  consumed = {a.id for n in nodes.values() for arts in getattr(n, 'inputs', {}).values()
              for a in arts}
  for node in sorted(nodes.values(), key=lambda n: (n.start_time, n.node_id)):
    kinds[node.node_id] = COMPONENT
    labels[node.node_id] = node.node_id.replace('.', '\n')
    if node.state == 'CACHED':
      cached.append(node.node_id)
    unused = []
    for key, artifacts in sorted(node.outputs.items()):
      for artifact in artifacts:
        if artifact.id in consumed:
          name = f'artifact {artifact.id}'
          kinds[name], labels[name] = ARTIFACT, _label(artifact, key)
          edges.append((node.node_id, name))
        else:
          unused.append(key)
    if unused:  # One box for the outputs that only the reader of the run looks at.
      name = f'unused {node.node_id}'
      kinds[name], labels[name] = ARTIFACT, '\n'.join(sorted(set(unused)))
      edges.append((node.node_id, name))
  for node in nodes.values():
    for key, artifacts in sorted(getattr(node, 'inputs', {}).items()):
      for artifact in artifacts:
        name = f'artifact {artifact.id}'
        if name not in kinds:  # Made outside this run (an earlier run's model).
          kinds[name], labels[name] = ARTIFACT, f'{key}\n(earlier run)'
        edges.append((name, node.node_id))
  return Graph(kinds, labels, sorted(set(edges)), cached)


def layers(graph: Graph) -> Dict[str, int]:
  """Each node's row: the longest path from a source; sources that feed only later rows (the
  resolvers, the imported schema) and their artifacts sit just above their first consumer."""
  row: Dict[str, int] = {}

  def asap(node: str) -> int:
    if node not in row:
      row[node] = 1 + max((asap(p) for p in graph.predecessors(node)), default=-1)
    return row[node]
  for node in graph.kinds:
    asap(node)
  for node in graph.kinds:
    if node.startswith('unused '):
      row[node] = row[graph.predecessors(node)[0]] + 1
  sources = [n for n in graph.kinds if not graph.predecessors(n)]
  for source in sources:
    if graph.kinds[source] == ARTIFACT:  # Made by an earlier run: just above its consumers.
      row[source] = max(row[source], min(row[c] for c in graph.successors(source)) - 1)
      continue
    outputs = graph.successors(source)
    if not outputs or any(len(graph.predecessors(a)) != 1 for a in outputs):
      continue
    for artifact in outputs:
      consumers = graph.successors(artifact)
      if consumers:
        row[artifact] = max(row[artifact], min(row[c] for c in consumers) - 1)
    row[source] = max(row[source], min(row[a] for a in outputs) - 1)
  return row


def positions(graph: Graph, rows: Dict[str, int]) -> Dict[str, Tuple[float, int]]:
  """(x, row) of each node: in each row, ordered by the mean x of its predecessors."""
  x: Dict[str, float] = {}
  for r in range(max(rows.values()) + 1):
    members = [n for n in graph.kinds if rows[n] == r]

    def key(node):  # Outputs nobody read go to the right end of their row.
      placed = [x[p] for p in graph.predecessors(node) if p in x]
      return (node.startswith('unused '), sum(placed) / len(placed) if placed else 0.0, node)
    members.sort(key=key)
    for i, node in enumerate(members):
      x[node] = i - (len(members) - 1) / 2
  return {n: (x[n], rows[n]) for n in graph.kinds}


def figure_dag(nodes, path: str) -> bool:
  """The DAG as it ran; False when the run recorded no execution."""
  if not nodes:
    return False
  graph = lineage(nodes)
  place = positions(graph, layers(graph))
  width = max(sum(1 for p in place.values() if p[1] == r) for r in {p[1] for p in place.values()})
  depth = max(p[1] for p in place.values()) + 1
  plt = pyplot()
  figure, ax = plt.subplots(figsize=(max(6.0, 1.9 * width), 0.8 * depth + 0.6))
  ax.set_xlim(-width / 2, width / 2)
  ax.set_ylim(-depth + 0.4, 0.6)
  ax.axis('off')
  texts = {}
  for node, (x, row) in place.items():
    component = graph.kinds[node] == COMPONENT
    style = dict(boxstyle='round,pad=0.35', lw=1.0,
                 fc=('#dbe8f6' if node not in graph.cached else '#eeeeee') if component
                 else '#fff8e6', ec='#1f5fa8' if component else '#b08a2e',
                 ls='--' if node in graph.cached else '-')
    label = graph.labels[node] + ('\n(cached)' if node in graph.cached else '')
    texts[node] = ax.text(x, -row, label, ha='center', va='center', bbox=style,
                          fontsize=7 if component else 6,
                          fontweight='bold' if component else 'normal',
                          style='normal' if component else 'italic')
  for source, target in graph.edges:
    ax.annotate('', xy=(0.5, 1.0), xycoords=texts[target], xytext=(0.5, 0.0),
                textcoords=texts[source],
                arrowprops=dict(arrowstyle='-|>', color='0.45', lw=0.7, shrinkA=1, shrinkB=1))
  ax.set_title(f'The pipeline as it ran: {sum(k == COMPONENT for k in graph.kinds.values())} '
               'components (blue) and the artifacts between them (yellow), from ML Metadata',
               fontsize=9)
  save(figure, path)
  return True
