"""The delivery engine: one file per job.

* :mod:`~publisher.delivery.dispatch` – due schedules become deliveries; ready deliveries go to workers
* :mod:`~publisher.delivery.deliver` – claim one delivery, call the platform, record the outcome
* :mod:`~publisher.delivery.outcomes` – recording outcomes (lock order, results, settling the post)
* :mod:`~publisher.delivery.reconcile` – resolve stuck and unconfirmed deliveries by asking the platform
* :mod:`~publisher.delivery.metrics` – collect engagement numbers
* :mod:`~publisher.delivery.retract` – remove a post everywhere
* :mod:`~publisher.delivery.assisted` – deliveries a person posts by hand: the ZIP package, confirmations
* :mod:`~publisher.delivery.context` – what every step shares (worker id, idempotency key, adapter context)

Rules that make "never post twice, never lose a post" hold are in :mod:`publisher.delivery.deliver`.
"""
