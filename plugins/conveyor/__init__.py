"""Conveyor: the library behind the DAGs. Plain functions, one module per concern."""
