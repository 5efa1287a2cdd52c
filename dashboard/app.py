"""The dashboard from a clone: `streamlit run dashboard/app.py` (with AUTOPEFT_STORAGE set to the store URL).

The app itself lives in the package (`autopeft/dashboard/app.py`) so that a normal, non-editable install
ships it and `autopeft dashboard` can run it; this file only runs that one.
"""

from autopeft.dashboard.app import main

main()
