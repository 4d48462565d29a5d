"""Evaluation of networks and checkpoints on datasets, and what their reports show.

:func:`.model_eval.evaluate_model` (a network on a parsed dataset), ``svllreid eval`` on a checkpoint
(:mod:`.checkpoint_eval`), text-to-image retrieval (:mod:`.text_eval`), the validation history and
the checkpoint it chooses (:mod:`.selection`), a run's result rows (:mod:`.results`) and the figures of
a report (:mod:`.reporting`). The metrics themselves are :mod:`svllreid.metrics`.
"""
