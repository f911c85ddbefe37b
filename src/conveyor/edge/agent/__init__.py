"""The edge agent (``conveyor edge run``, docs/edge.md): follows one deployment of a control plane from an
edge node — polls what to serve (``poller``), downloads and verifies it (``download``), keeps the last good
versions (``cache``), and hands each verified version to the local server to swap in (``agent``).

It never imports the server or the gateway: the local V2 server it swaps into is injected (``Serving``), built
by targets/edge_node.py with the same in-process data plane ``conveyor serve`` uses.
"""
