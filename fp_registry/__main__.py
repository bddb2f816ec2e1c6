"""``python -m fp_registry``."""
from .cli import main

main()
