"""`python -m autopeft.cli ...`: the same as the `autopeft` command."""

from autopeft.cli import main

main()
