"""How the API is served: gunicorn's worker class and access log for Sessionizer.

Loaded by the gunicorn master (``config/gunicorn.conf.py``) before any worker process exists, so
this package imports neither the application nor anything that opens sockets or creates locks at
import time: each worker monkey-patches the standard library (gevent) before it imports the app.
"""
