"""The rich console every command prints its tables and results to."""
from rich.console import Console

console = Console()
