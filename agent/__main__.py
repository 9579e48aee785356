"""`python -m agent` = `cabinet-agent`."""

from agent.cli import main

main()
