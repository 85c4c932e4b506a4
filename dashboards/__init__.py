"""The Streamlit operator app (see issue: operator app)."""
