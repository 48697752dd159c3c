"""``python -m conntrack_tools.conntrackd`` runs the ``conntrackd`` program."""
from .main import console

console()
