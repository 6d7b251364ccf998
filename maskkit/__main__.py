"""``python -m maskkit ...`` runs the ``maskkit`` command line (also ``torchrun -m maskkit train ...``)."""

from maskkit_cli.main import main

if __name__ == "__main__":
    main()
