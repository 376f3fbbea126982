import gc

from portal import create_app

app = create_app()
# What start-up made (the app, its services, the institution directory) lives as long as the
# process: moved out of the collector's sight, a full collection no longer walks it between
# requests, and forked workers do not copy its pages by touching their headers (gc.freeze, the
# standard library's way for pre-fork servers).
gc.freeze()
