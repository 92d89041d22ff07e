"""Feature slices. Each folder is one Flask blueprint with four files, one job each:

    sql.py       named queries (no HTML)
    view.py      pure functions model -> HTML (no store, no request, no side effects)
    commands.py  validate -> write -> publish (the only place a feature mutates)
    routes.py    the blueprint that wires pages, live streams and commands to URLs

A feature never imports another feature's internals; features meet through the store, the
bus and the belt. tests/test_structure.py keeps these rules true.
"""
