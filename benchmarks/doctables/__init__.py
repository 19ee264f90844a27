"""The generators behind ``benchmarks/tables.py``: one function per results table, each reading only committed files."""
