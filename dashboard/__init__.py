"""The gorelay dashboard (installed as ``gorelay_kombu.dashboard``); see issue 7."""
