"""Database: the embedded or external PostgreSQL server, the Piccolo engine, tables, migrations."""

import os

# Piccolo finds its configuration through this variable; point it at ours before it looks.
os.environ.setdefault("PICCOLO_CONF", "service.db.piccolo_conf")
