"""Doctest collection skips tnc's optional-backend modules when their library is missing
(``--doctest-modules`` imports every module, and torch and jax are optional extras)."""
import importlib.util

collect_ignore = [path for path, needs in (("tnc/torch.py", "torch"), ("tnc/jax.py", "jax"))
                  if importlib.util.find_spec(needs) is None]
