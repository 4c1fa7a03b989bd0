"""Everything MLflow: store selection, run lifecycle and logging, registry and URI resolution."""
