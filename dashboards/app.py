"""The operator app: ``streamlit run dashboards/app.py -- --historian DIR [--model MODEL]``.

Usually started by ``twin dashboard``, which also sets the grey theme, the viewer toolbar and
the loopback address. Settings: see :mod:`dashboards.data`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    from dashboards import auth, data, style
except ImportError:  # run from a checkout that is not installed: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dashboards import auth, data, style

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="Process twin", layout="wide")
st.markdown(style.CSS, unsafe_allow_html=True)

PAGES = [
    st.Page(
        HERE / "views" / "overview.py", title="Overview", icon=":material/dashboard:", default=True
    ),
    st.Page(HERE / "views" / "plant.py", title="Plant", icon=":material/monitoring:"),
    st.Page(HERE / "views" / "trends.py", title="Trends", icon=":material/search:"),
    st.Page(HERE / "views" / "forecast.py", title="Forecast", icon=":material/timeline:"),
    st.Page(HERE / "views" / "whatif.py", title="What-if", icon=":material/science:"),
    st.Page(HERE / "views" / "recommendations.py", title="Recommendations", icon=":material/tune:"),
    st.Page(HERE / "views" / "model.py", title="Model", icon=":material/model_training:"),
]

page = st.navigation(PAGES)
cfg = data.app_config()
with st.sidebar:
    auth.sign_in_box()
    st.caption(f"historian: `{cfg.historian or 'none'}`")
    st.caption(f"model: `{cfg.model or 'none'}`")
    st.caption("advisory: approval mode on" if cfg.approve else "advisory only")
if not auth.can("view"):
    st.info("Sign in (in the sidebar) to see the plant.")
    st.stop()
page.run()
