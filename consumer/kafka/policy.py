"""How the scorer treats Kafka errors: which produce errors no retry of the batch fixes, which fatal errors
mean another instance took over, which stop the scorer, and which leave the transactional producer with a
stale coordinator."""

from __future__ import annotations

from confluent_kafka import KafkaError

# Produce errors that retrying the same batch cannot fix.
NON_RETRIABLE_PRODUCE_CODES = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
}
# A fatal transactional-producer error with one of these means another instance owns our transactional.id:
# this process must stop. Any other fatal producer error (e.g. INVALID_TXN_STATE after the coordinator timed out
# our transaction during a broker outage) is recovered by a new producer with the same id, which fences the old.
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
# Errors that no retry will fix: wrong credentials, missing topics, no permission.
FATAL_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._SSL,
    KafkaError.INVALID_CONFIG,
}

# Errors after which the transactional producer's coordinator view may be stale (see _abort_and_rewind).
COORDINATOR_TROUBLE_CODES = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
}
