"""The real-broker fixtures of tests.support, for the tests of cabinetctl."""

from tests.support.fixtures import broker_certs, make_broker  # noqa: F401
