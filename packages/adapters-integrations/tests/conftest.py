"""Before any test module imports litellm: its bundled price map, not a download from GitHub.

(litellm fetches the map at import unless LITELLM_LOCAL_MODEL_COST_MAP is set;
the Makefile exports it, this covers `pytest` run by hand. The guardrail module
sets it too, but a test may import litellm's types before it.)
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
