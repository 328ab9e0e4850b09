"""The ``anonlens`` command line: thin Typer commands over the library."""
