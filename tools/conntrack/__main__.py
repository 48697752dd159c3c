"""``python -m conntrack_tools.conntrack`` runs the ``conntrack`` command."""
from .main import console

console()
