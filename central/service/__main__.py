"""`python -m central.service` = `cabinet-central`."""

from central.service.cli import main

main()
