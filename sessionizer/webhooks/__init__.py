"""Completion pushes: when a job ends (``job.succeeded``, ``job.failed``, ``job.cancelled``), a
signed POST to the ``callback_url`` its client gave, as the Standard Webhooks specification
describes (https://www.standardwebhooks.com/).

Parts: ``signing`` (the secrets and the ``webhook-signature``), ``guard`` (which URLs and
addresses may be called: the SSRF guard). The Redis records (what to send, when, and every
attempt) are the job store's (``jobstore/deliveries.py``). The sending itself is the workers'
(``worker/webhooks/``); the API only checks a ``callback_url`` at submit and shows the
deliveries. Standard library only: the API imports this package.
"""
