"""The Celery layer of gorelay-kombu (installed as ``gorelay_kombu.compat``)."""
