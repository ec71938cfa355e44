"""``python -m pvd`` runs the command line."""

from pvd.cli import main

main()
