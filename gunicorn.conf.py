"""gunicorn's settings for this repository: gunicorn reads ``./gunicorn.conf.py`` by default, so
``make run``, the benchmarks and a production command started here all get them (a deployment
with its own ``-c`` file should copy these hooks).

What start-up made (the app, its services, the institution directory) lives as long as the
process. ``gc.freeze()`` moves it out of the cyclic collector's sight: a full collection no
longer walks it between requests, and forked workers do not copy its pages by touching their
headers (the standard library's advice for pre-fork servers)."""
import gc


def pre_fork(server, worker):
    gc.freeze()  # --preload: the master's app, before each worker is forked from it


def post_worker_init(worker):
    gc.freeze()  # without --preload each worker built the app itself
