"""Running a Beam CombineFn the way a runner may: inputs split over several accumulators,
each optionally compacted (before a shuffle), then merged and extracted."""
import numpy as np


def combine(combiner, inputs, parts: int, compact: bool = False):
  accumulators = []
  for chunk in np.array_split(np.arange(len(inputs)), parts):
    accumulator = combiner.create_accumulator()
    for i in chunk:
      accumulator = combiner.add_input(accumulator, inputs[i])
    accumulators.append(combiner.compact(accumulator) if compact else accumulator)
  return combiner.extract_output(combiner.merge_accumulators(accumulators))
