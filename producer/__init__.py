"""The producer: publishes housing records to ``housing.records`` (``housing-produce``).

``producer.records`` holds the pure record sources (CSV, synthetic, stdin) and bad-record injection;
``producer.publish`` is the only Kafka import (paced produce loop, delivery accounting, ``send_records``);
``producer.bad_records`` is the corpus of malformed inputs. Import the submodules directly.
"""
