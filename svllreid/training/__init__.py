"""Training: the ReID run (both stages) from a config, its tasks, the one fit loop, optimisers,
run directories, pretraining of a CLIP on captions, hyper-parameter tuning and the demo."""
