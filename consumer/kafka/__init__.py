"""Everything that talks to Kafka (the only confluent-kafka imports of the scorer): clients, the producer and
its recovery, the commit strategies, the scoring loop and the control plane."""
