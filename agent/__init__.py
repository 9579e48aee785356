"""cabinet-agent: the daemon of a two-person-rule reagent cabinet."""

__version__ = "0.1.0"
