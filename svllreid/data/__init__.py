"""The data layer: dataset parsers, transforms, samplers and loaders."""
