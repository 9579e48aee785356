from tests.support.fixtures import broker_certs, make_broker  # noqa: F401
