"""The plugNmeet webhook receiver's machinery, below the four files at the top level.

``app.py`` (the factory and the webhook route), ``config.py`` (settings), ``validation.py``
(verify and sign) and ``handlers.py`` (one handler per event) say what the service does;
this package holds how: storage, the ledger, the web routes besides the webhook, the
command line, and the runtime that ties them together in one process.
"""
