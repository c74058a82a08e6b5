"""The workers' completion pushes: a sender that signs and posts each due push
(``sender.py``), run by a small loop in every worker (``loop.py``). What is due, and every
attempt, is kept in Redis (``sessionizer/jobstore/deliveries.py``)."""
