"""The pure scoring core: decode, validate, features, the model handle and its fast paths, reload rules, the
reference profile. No Kafka and no MLflow here."""
