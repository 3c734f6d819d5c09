from .cli import extender_app

extender_app(prog_name="ome extender")
