"""`python -m central` = `cabinetctl`."""

from central.cli import main

main()
