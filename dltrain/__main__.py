"""``python -m dltrain``: the same command line as the ``dltrain`` script."""

from dltrain.cli import main

main()
