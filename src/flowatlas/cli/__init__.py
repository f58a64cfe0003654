"""The ``flowatlas`` command line: thin commands over the core objects."""
