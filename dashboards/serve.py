"""Streamlit's server with the app's code imported first: the first page opened is not slower.

    python -m dashboards.serve run dashboards/app.py [streamlit options] -- [app options]

takes exactly what ``python -m streamlit`` takes (``twin dashboard`` builds that line). Before
the server listens, it imports what the pages run: plotly, polars, the app's modules and, when a
model is configured (``--model`` after ``--``, else ``$TWIN_MODEL``), torch and the twin's code.
In a fresh ``streamlit run`` process the first session pays those imports: about 1 s for the
pages' libraries and 2-3 s for torch on a busy 2-core machine, so a first page that needs the
twin (Forecast) would wait 3-4 s. The twin itself then loads in milliseconds, once per process
(:func:`dashboards.data.load_twin`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

#: modules every page imports, whatever the plant (a module missing here is skipped)
PAGE_MODULES = (
    "polars",
    "plotly.graph_objects",
    "dashboards.data",
    "dashboards.style",
    "dashboards.page",
    "dashboards.charts",
    "dashboards.panels",
    "dashboards.trends",
    "dashboards.trendsets",
    "dashboards.alarms",
    "dashboards.alarm_book",
    "dashboards.modes",
    "dashboards.auth",
    "dashboards.overview_data",
    "dashboards.compute",
)


def model_configured(argv: list[str]) -> bool:
    """Whether the app's arguments (those after ``--``) or the environment name a model."""
    from dashboards.data import ENV, parse_args

    app_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    return bool(parse_args(app_args).model or os.environ.get(ENV["model"]))


def warm(argv: list[str]) -> float:
    """Import the pages' code (and the twin's when a model is configured); seconds taken."""
    t0 = time.perf_counter()
    # st.cache_data checks its settings against a storage that exists only once the server
    # runs; before it, it warns "No runtime found" once per cached function (harmless: the
    # cache itself is looked up at call time, in the running server)
    importlib.import_module("streamlit.runtime.caching.cache_data_api")  # sets its log level
    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)
    for name in PAGE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a page module renamed: the page imports what it needs
            log.debug("not preloaded: %s (%s)", name, exc)
    if model_configured(argv):
        from dashboards.data import import_model_code

        import_model_code()
    return time.perf_counter() - t0


def main() -> None:
    warm(sys.argv[1:])
    from streamlit.web.cli import main as streamlit_main

    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
