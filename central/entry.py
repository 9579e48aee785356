"""The programs' entry points: `cabinetctl` and `cabinet-central`.

The centre's packages (rich, SQLAlchemy, FastAPI, ...) are the `central` extra, which a
cabinet does not install (scripts/install-pi.sh), yet both programs come with the same
distribution. Run there, they say which extra is missing in one line instead of an
ImportError's traceback.
"""

from __future__ import annotations

import os
import sys

# Top-level import names of the `central` extra in pyproject.toml.
CENTRAL_EXTRA = frozenset(
    {
        "rich",
        "fastapi",
        "starlette",
        "jinja2",
        "itsdangerous",
        "multipart",
        "python_multipart",
        "sse_starlette",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "argon2",
        "uvicorn",
    }
)


def _missing_extra(program: str, exc: ModuleNotFoundError) -> None:
    top = (exc.name or "").partition(".")[0]
    if top not in CENTRAL_EXTRA:
        raise exc
    print(
        f"{program}: the centre's packages are not installed ({top} is missing): "
        "pip install 'cabinet-agent[central]'",
        file=sys.stderr,
    )
    sys.exit(os.EX_UNAVAILABLE)


def cabinetctl() -> None:
    try:
        from central.cli import main
    except ModuleNotFoundError as exc:
        _missing_extra("cabinetctl", exc)
    main()


def cabinet_central() -> None:
    try:
        from central.service.cli import main
    except ModuleNotFoundError as exc:
        _missing_extra("cabinet-central", exc)
    main()
