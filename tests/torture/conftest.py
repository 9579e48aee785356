from tests.support.fixtures import broker_certs, make_broker, recorder  # noqa: F401
