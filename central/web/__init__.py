"""The centre's HTTP API and web console: one ASGI app over one store (`create_app`)."""
