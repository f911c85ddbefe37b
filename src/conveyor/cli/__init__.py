"""The ``conveyor`` command line: thin commands over the public API."""
