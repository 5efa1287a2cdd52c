"""Dashboard tests: the pages through Streamlit's AppTest, the command, live reads, a real browser."""
