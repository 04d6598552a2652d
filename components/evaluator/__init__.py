"""EmbeddingEvaluator: TFMA's evaluation with the project's metrics (top-k accuracy, leave-one-out
retrieval mAP), metrics.json with intervals and floors, and a blessing (component.py declares
it, executor.py does the work, outputs.py reads the results back)."""
