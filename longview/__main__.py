from longview.cli import app

app(prog_name="longview")
