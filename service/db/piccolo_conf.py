"""What Piccolo reads (``PICCOLO_CONF=service.db.piccolo_conf``): the engine and the app registry.

The engine is the one ``service.db.engine.connect`` built; run from the Piccolo CLI (to generate a
migration), it connects from the environment the same way the service does.
"""

from piccolo.conf.apps import AppRegistry

from service.db import engine as _engine

if not _engine.has_current():  # pragma: no cover - only when the Piccolo CLI imports this first
    import asyncio

    from service.settings import Settings

    _dsn, _is_embedded = _engine.resolve_dsn(Settings.from_env())
    asyncio.run(_engine.ensure_database_exists(_dsn))
    _engine.connect(_dsn, is_embedded=_is_embedded)


def __getattr__(name: str) -> object:
    """``DB`` is looked up on each use, so it follows ``service.db.engine.rebind``."""
    if name == "DB":
        return _engine.current().engine
    raise AttributeError(name)


APP_REGISTRY = AppRegistry(apps=["service.db.piccolo_app"])
