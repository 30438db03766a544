"""`python -m longview` (e.g. under torchrun): the `longview` command. A launcher, not part of the
foundation: nothing imports it, so this one arrow up (to control.cli) cannot make a cycle."""

from control.cli import entrypoint

entrypoint(prog_name="longview")
