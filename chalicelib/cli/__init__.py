"""The ``aftercare`` command line."""
