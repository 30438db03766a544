from longview.cli import entrypoint

entrypoint(prog_name="longview")
