"""Shared test helpers for real parts (a real mosquitto broker with TLS and ACLs)."""
