"""forecast page (being written)."""

import streamlit as st

st.write("todo")
