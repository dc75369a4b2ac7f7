"""``trilha demo``: the examples served with stand-ins for the services they call.

The stand-ins (:mod:`trilha.demo.agenda` for ``examples/scheduling.json``,
:mod:`trilha.demo.booking` for ``examples/clinic.json``) live in the package, not in
``examples/``, so that a plain ``pip install .`` carries them; ``examples/*_standin.py``
run them by hand. They use the standard library only (:mod:`trilha.demo.standin`), so
they can be read, copied and changed without learning trilha first.
"""
