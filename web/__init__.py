"""The web face of adapterhub: a Streamlit app over ``adapterhub.registry.client`` and ``adapterhub.compose``.

``app.py`` is the entry script (``adapterhub ui`` runs it), ``pages/`` holds one thin script per page,
``state.py`` the session, the cached client and reads and the error boundary, ``views.py`` pure
shaping of registry answers, ``eval_views.py`` the same for evaluations (the Evaluate form from a
card's protocol, Reproduce, the evaluations table), ``engine.py`` the calls into the engine
(playground, evaluation, re-running a recorded evaluation).
"""
