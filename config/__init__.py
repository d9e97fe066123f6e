"""Configuration and connections shared by every package: the settings table and loader, logging, thread
pools, Kafka client configs and the MLflow probe. Imports only ``schemas``."""
