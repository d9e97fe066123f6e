"""housing-evaluate: live accuracy from observed outcomes (issue 14).

Pure parts: the sums and metrics per model version and role (``stats``), the bounded join of outcomes to
predictions by record id (``join``), the checkpoint and the published snapshot (``checkpoint``, ``snapshot``).
Around them: the Prometheus view (``metrics``), MLflow logging (``mlflow_log``), the plot (``plots``), the
loop (``run``, its Kafka I/O in ``consumer.kafka.evaluation_io``) and the console script (``__main__``).
"""
