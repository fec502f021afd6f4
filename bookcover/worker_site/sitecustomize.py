"""Read by the local Beam worker processes of a quiet run (bookcover.console.quiet_environment
puts this folder on their PYTHONPATH).

TensorFlow functions that a worker still holds when its interpreter shuts down
raise in their finaliser ("Exception ignored in: <function AtomicFunction.__del__>
... TypeError: 'NoneType' object is not subscriptable"): the worker's work is
done by then, and the report is noise. That one report is dropped; every other
unraisable exception is reported as Python would.
"""

import sys

_python_hook = sys.unraisablehook


def _drop_tensorflow_teardown(unraisable, _python_hook=_python_hook, _sys=sys):
    where = getattr(unraisable.object, "__qualname__", "")
    if where == "AtomicFunction.__del__" and unraisable.exc_type is TypeError:
        return
    _python_hook(unraisable)


sys.unraisablehook = _drop_tensorflow_teardown
