"""The web console: pages served by ``flowatlas serve`` over the same HTTP API and gate.

The browser holds only a session cookie; the server maps it to the tenant's API key
(:mod:`flowatlas.console.sessions`), and every page's data comes from the ``/v1`` routes, so a
page shows exactly what the key allows. See docs/console.md.
"""
