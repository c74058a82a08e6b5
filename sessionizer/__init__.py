"""What the API process and the workers share: typed settings (``settings``), job statuses
(``status``), task names (``tasks``), the methods' parameters (``methods``), the job store
(``jobstore``: keys, Lua scripts, lifecycle, reads, sharing, rate limit, idempotency, wait
slots) and the Celery app factory (``celery_app``).

Light on purpose: the API imports it, so nothing here imports NumPy, pandas, hdbscan or the
Elasticsearch client (a test starts the API process and checks).
"""
