"""Running embedq evaluations through the workers: data files, metrics, results."""
