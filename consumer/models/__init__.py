"""Models from MLflow: resolve, load, check and fall back; the reloader and the registry poll."""
