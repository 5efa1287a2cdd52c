"""The Streamlit dashboard: reads the store (never writes it) and shows fronts, histories and trials.

`views` holds the plain data every page draws (built by `data` from a read-only store), `charts`
turns it into plotly figures, and `app` lays out the pages. Only `app` imports Streamlit.
"""
