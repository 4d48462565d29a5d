"""Deprecated: the engine was split by job into svllreid.training, .evaluation, .export, .inference
and .serve; each old module path here still works for one release, with a DeprecationWarning."""
