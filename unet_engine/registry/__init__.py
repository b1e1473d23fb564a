"""Model versions of a project: the registry, and resolving a model name to a checkpoint."""
