"""Every module in this package registers exercises with ``ppo_lib.course.grading.register``.
They are imported here automatically: add a module, and its exercises exist."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
