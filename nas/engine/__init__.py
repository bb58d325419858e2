"""The search engine: a stored job bound once, run as a sequence of phases (prepare, latency model, search,
finish, export) by the controller under a lease; the strategies, early stopping and the recording of results.

The engine reads and writes the database through `nas.db` and hands work to `workers`; it never imports the
service (`nas.api`, `nas.web`, `nas.service`), the command line or the client.
"""
