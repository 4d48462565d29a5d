"""Training: tasks (one per stage), the single fit loop, optimisers, schedules, checkpoints."""
