"""An inference Space that can only serve GOOD_REVISION (a comma-separated list): for any other
MODEL_REVISION or CANARY_REVISION it crashes at start-up (PICKY_MODE=crash) or answers /health
'loading' forever (PICKY_MODE=hang). Stands in for a new model version that breaks the Space."""
import json
import os
import runpy
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the project on the path

wanted = {os.environ.get("MODEL_REVISION", ""), os.environ.get("CANARY_REVISION", "")} - {""}
if wanted <= set(os.environ["GOOD_REVISION"].split(",")):
    sys.argv = ["inference_space"]
    runpy.run_module("inference_space", run_name="__main__")
elif os.environ.get("PICKY_MODE") == "crash":
    sys.exit("cannot load this model revision")
else:
    class Loading(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "loading", "revision": os.environ["MODEL_REVISION"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Loading).serve_forever()
