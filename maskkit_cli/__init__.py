"""The ``maskkit`` command line: a thin click layer over the ``maskkit`` package."""
