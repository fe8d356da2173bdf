"""ModelDB v1 test peer: the generated ModelDBService.Processor from the PyPI package
`modeldb==0.0.1a30`, served over framed transport + strict binary protocol on 127.0.0.1, with an
in-memory handler that behaves like the reference Java server (server/ @ e576f2f) for the calls
the Light API and sagesync use.

Usage: python modeldb_v1_peer.py --log rpc.jsonl [--port 0 [--reuse-port]] [--fail METHOD] [--fail-times N]
--reuse-port binds with SO_REUSEPORT, to take over a port a test holds (bound, not listening).
Prints "READY <thrift port> <http port>" on stdout once it accepts connections. Every RPC is
logged as one JSON line {"seq", "method", "args", "reply", "error"}; GET /state on the HTTP port
returns the peer's tables as JSON.
"""
import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import socket
import sys
import threading
import time

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from modeldb.thrift.modeldb import ModelDBService
from modeldb.thrift.modeldb import ttypes as t


def to_jsonable(v):
    if hasattr(v, "thrift_spec"):
        out = {}
        for spec in v.thrift_spec:
            if spec is None:
                continue
            name = spec[2]
            val = getattr(v, name, None)
            if val is not None:
                out[name] = to_jsonable(val)
        return out
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_jsonable(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


class Store:
    def __init__(self):
        self.next = {}
        self.projects = {}
        self.experiments = {}
        self.runs = {}
        self.dataframes = {}
        self.transformers = {}
        self.specs = {}
        self.fit_events = {}
        self.metric_events = {}
        self.events = {}
        # The reference server's MongoDB `model_metadata` collection: model id -> its first
        # document (keys in insertion order: `_id`, the FitEvent's JSON, `MODELDB_model_id`,
        # then fields set later).
        self.metadata = {}

    def new_id(self, table):
        self.next[table] = self.next.get(table, 0) + 1
        return self.next[table]

    def dump(self):
        return {
            "projects": list(self.projects.values()),
            "experiments": list(self.experiments.values()),
            "runs": list(self.runs.values()),
            "dataframes": list(self.dataframes.values()),
            "transformers": list(self.transformers.values()),
            "specs": list(self.specs.values()),
            "fit_events": list(self.fit_events.values()),
            "metric_events": list(self.metric_events.values()),
            "events": len(self.events),
            "metadata": {str(k): v for k, v in self.metadata.items()},
        }


def mongo_legacy(v):
    """A value as the MongoDB Java driver's legacy JSON.serialize writes it."""
    if isinstance(v, dict):
        if not v:
            return "{ }"
        return "{ " + " , ".join(json.dumps(k) + " : " + mongo_legacy(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[ " + " , ".join(mongo_legacy(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return repr(v) if v != int(v) or abs(v) >= 1e7 else "%.1f" % v
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


class Handler:
    def __init__(self, store, fail, fail_times):
        self.s = store
        self.fail = fail
        self.fail_times = fail_times

    def maybe_fail(self, method):
        if self.fail == method and self.fail_times != 0:
            self.fail_times -= 1
            raise t.ServerLogicException(message="injected failure in %s" % method)

    def check_run(self, run_id):
        if run_id not in self.s.runs:
            raise t.InvalidExperimentRunException(message="Can't find experiment run ID %d" % run_id)

    def store_df(self, df, run_id):
        if df.id is not None and df.id in self.s.dataframes:
            return df.id
        i = self.s.new_id("DataFrame")
        self.s.dataframes[i] = {
            "id": i, "experimentRun": run_id, "tag": df.tag, "numRows": df.numRows, "filepath": df.filepath,
            "schema": to_jsonable(df.schema or []), "metadata": to_jsonable(df.metadata or []),
        }
        return i

    def store_transformer(self, tr, run_id):
        if tr.id is not None and tr.id in self.s.transformers:
            return tr.id
        i = self.s.new_id("Transformer")
        # The reference DAO does not persist filepath; the peer keeps what was sent beside it.
        self.s.transformers[i] = {"id": i, "experimentRun": run_id, "transformerType": tr.transformerType, "tag": tr.tag, "filepath_sent": tr.filepath}
        return i

    def store_spec(self, spec, run_id):
        if spec.id is not None and spec.id in self.s.specs:
            return spec.id
        i = self.s.new_id("TransformerSpec")
        for h in spec.hyperparameters:  # the reference server dereferences the list
            pass
        self.s.specs[i] = {"id": i, "experimentRun": run_id, "transformerType": spec.transformerType, "tag": spec.tag,
                           "hyperparameters": to_jsonable(spec.hyperparameters)}
        return i

    def event(self, kind, run_id):
        i = self.s.new_id("Event")
        self.s.events[i] = {"id": i, "eventType": kind, "experimentRun": run_id}
        return i

    # --- RPCs ---------------------------------------------------------------------------
    def testConnection(self):
        return 200

    def storeProjectEvent(self, pr):
        self.maybe_fail("storeProjectEvent")
        p = pr.project
        for row in self.s.projects.values():
            if row["name"] == p.name and row["author"] == p.author:
                return t.ProjectEventResponse(projectId=row["id"])
        i = self.s.new_id("Project")
        self.s.projects[i] = {"id": i, "name": p.name, "author": p.author, "description": p.description}
        e = self.s.new_id("Experiment")
        self.s.experiments[e] = {"id": e, "project": i, "name": "Default_Experiment", "description": "Default Experiment"}
        return t.ProjectEventResponse(projectId=i)

    def storeExperimentEvent(self, er):
        self.maybe_fail("storeExperimentEvent")
        x = er.experiment
        if x.isDefault:
            ids = [r["id"] for r in self.s.experiments.values() if r["project"] == x.projectId]
            return t.ExperimentEventResponse(experimentId=min(ids) if ids else -1)
        for row in self.s.experiments.values():
            if row["project"] == x.projectId and row["name"] == x.name:
                return t.ExperimentEventResponse(experimentId=row["id"])
        i = self.s.new_id("Experiment")
        self.s.experiments[i] = {"id": i, "project": x.projectId, "name": x.name, "description": x.description}
        return t.ExperimentEventResponse(experimentId=i)

    def storeExperimentRunEvent(self, er):
        self.maybe_fail("storeExperimentRunEvent")
        r = er.experimentRun
        i = self.s.new_id("ExperimentRun")
        self.s.runs[i] = {"id": i, "experiment": r.experimentId, "description": r.description, "sha": r.sha}
        return t.ExperimentRunEventResponse(experimentRunId=i)

    def storeFitEvent(self, fe):
        self.maybe_fail("storeFitEvent")
        self.check_run(fe.experimentRunId)
        for f in self.s.fit_events.values():
            if f["model"] == fe.model.id:
                return t.FitEventResponse(**f["response"])
        # The reference server dereferences these lists unconditionally.
        _ = (len(fe.df.schema), len(fe.spec.hyperparameters), len(fe.featureColumns), len(fe.predictionColumns), len(fe.labelColumns))
        df = self.store_df(fe.df, fe.experimentRunId)
        spec = self.store_spec(fe.spec, fe.experimentRunId)
        model = self.store_transformer(fe.model, fe.experimentRunId)
        ev = self.event("fit", fe.experimentRunId)
        i = self.s.new_id("FitEvent")
        resp = {"dfId": df, "specId": spec, "modelId": model, "eventId": ev, "fitEventId": i}
        self.s.fit_events[i] = {"id": i, "experimentRun": fe.experimentRunId, "df": df, "spec": spec, "model": model,
                                "problemType": fe.problemType, "metadata": fe.metadata, "response": resp}
        # The SQL rows stay even when the metadata is refused (no transaction), as in the
        # reference server: the metadata must be a JSON object.
        if fe.metadata is not None:
            try:
                doc = json.loads(fe.metadata)
            except ValueError as e:
                raise t.ServerLogicException(message="JSONParseException: %s" % e)
            if not isinstance(doc, dict):
                raise t.ServerLogicException(message="ClassCastException: metadata is not a JSON object")
            if model not in self.s.metadata:
                full = {"_id": {"$oid": "%024x" % (0x5c0000000000000000000000 + model)}}
                full.update(doc)
                full["MODELDB_model_id"] = model
                self.s.metadata[model] = full
        return t.FitEventResponse(**resp)

    def getModelIds(self, keyValuePairs):
        self.maybe_fail("getModelIds")
        # The reference server's MongoDB find on the pairs (string values, dot paths): the
        # model id of every matching document.
        def get(doc, key):
            for p in key.split("."):
                if not isinstance(doc, dict) or p not in doc:
                    return None
                doc = doc[p]
            return doc
        return [m for m, doc in sorted(self.s.metadata.items())
                if all(get(doc, k) == v for k, v in (keyValuePairs or {}).items())]

    def createOrUpdateScalarField(self, modelId, key, value, valueType):
        self.maybe_fail("createOrUpdateScalarField")
        # The value is converted first (errors even for unknown models), then one `$set` on the
        # model's document, without upsert: False when the model has none.
        try:
            if valueType == "string":
                v = value
            elif valueType in ("int", "long"):
                v = int(value)
            elif valueType == "double":
                v = float(value)
            elif valueType == "bool":
                v = value.lower() == "true"
            elif valueType == "datetime":
                v = {"$date": value}
            else:
                raise t.ServerLogicException(message="IllegalArgumentException: Unsupported value type: %s" % valueType)
        except ValueError:
            raise t.ServerLogicException(message='NumberFormatException: For input string: "%s"' % value)
        parts = key.split(".")
        if key == "_id" or any(p == "" or p.startswith("$") for p in parts):
            raise t.ServerLogicException(message="WriteConcernException: invalid field name %s" % key)
        doc = self.s.metadata.get(modelId)
        if doc is None:
            return False
        for p in parts[:-1]:
            doc = doc.setdefault(p, {})
            if not isinstance(doc, dict):
                raise t.ServerLogicException(message="WriteConcernException: cannot create field %s" % key)
        doc[parts[-1]] = v
        return True

    def storeMetricEvent(self, me):
        self.maybe_fail("storeMetricEvent")
        self.check_run(me.experimentRunId)
        df = self.store_df(me.df, me.experimentRunId)
        model = self.store_transformer(me.model, me.experimentRunId)
        ev = self.event("metric", me.experimentRunId)
        i = self.s.new_id("MetricEvent")
        self.s.metric_events[i] = {"id": i, "experimentRun": me.experimentRunId, "df": df, "model": model,
                                   "metricType": me.metricType, "metricValue": me.metricValue,
                                   "labelCol": me.labelCol, "predictionCol": me.predictionCol}
        return t.MetricEventResponse(modelId=model, dfId=df, eventId=ev, metricEventId=i)

    def storeDataFrame(self, df, experimentRunId):
        self.maybe_fail("storeDataFrame")
        self.check_run(experimentRunId)
        _ = len(df.schema)
        return self.store_df(df, experimentRunId)

    def getRunsAndExperimentsInProject(self, projId):
        self.maybe_fail("getRunsAndExperimentsInProject")
        exps = [r for r in self.s.experiments.values() if r["project"] == projId]
        ids = {r["id"] for r in exps}
        runs = [r for r in self.s.runs.values() if r["experiment"] in ids]
        return t.ProjectExperimentsAndRuns(
            projId=projId,
            experiments=[t.Experiment(id=e["id"], projectId=projId, name=e["name"], description=e["description"], isDefault=False) for e in exps],
            experimentRuns=[t.ExperimentRun(id=r["id"], experimentId=r["experiment"], description=r["description"]) for r in runs],
        )

    def getExperimentRunDetails(self, experimentRunId):
        self.maybe_fail("getExperimentRunDetails")
        run = self.s.runs.get(experimentRunId)
        if run is None:
            raise t.ResourceNotFoundException(message="Could not find experiment run %d" % experimentRunId)
        exp = self.s.experiments[run["experiment"]]
        proj = self.s.projects[exp["project"]]
        models = []
        for f in sorted(self.s.fit_events.values(), key=lambda f: f["id"]):
            if f["experimentRun"] != experimentRunId:
                continue
            metrics = {}
            for m in self.s.metric_events.values():
                if m["model"] == f["model"]:
                    metrics.setdefault(m["metricType"], {})[m["df"]] = m["metricValue"]
            df = self.s.dataframes[f["df"]]
            tr = self.s.transformers[f["model"]]
            models.append(t.ModelResponse(
                id=f["model"], experimentRunId=experimentRunId, experimentId=exp["id"], projectId=proj["id"],
                trainingDataFrame=t.DataFrame(id=df["id"], schema=[], numRows=df["numRows"], tag=df["tag"], filepath=df["filepath"], metadata=[]),
                specification=t.TransformerSpec(id=f["spec"], transformerType=tr["transformerType"], hyperparameters=[], tag=tr["tag"]),
                problemType=f["problemType"] or 0, featureColumns=[], labelColumns=[], predictionColumns=[],
                metrics=metrics, annotations=[], sha="", filepath=tr["filepath_sent"] or "", timestamp="",
                metadata=mongo_legacy(self.s.metadata[f["model"]]) if f["model"] in self.s.metadata else ""))
        return t.ExperimentRunDetailsResponse(
            project=t.Project(id=proj["id"], name=proj["name"], author=proj["author"], description=proj["description"]),
            experiment=t.Experiment(id=exp["id"], projectId=proj["id"], name=exp["name"], description=exp["description"], isDefault=False),
            experimentRun=t.ExperimentRun(id=run["id"], experimentId=run["experiment"], description=run["description"]),
            modelResponses=models)


class LoggingHandler:
    """Wraps the handler: one lock, one JSON line per RPC, state file after each call."""

    def __init__(self, inner, log):
        self.inner = inner
        self.log = log
        self.lock = threading.Lock()
        self.seq = 0

    def __getattr__(self, method):
        fn = getattr(self.inner, method)

        def call(*args):
            with self.lock:
                self.seq += 1
                rec = {"seq": self.seq, "method": method, "args": [to_jsonable(a) for a in args], "reply": None, "error": None}
                try:
                    res = fn(*args)
                    rec["reply"] = to_jsonable(res)
                    return res
                except Exception as e:  # logged, then re-raised for the processor
                    rec["error"] = {"type": type(e).__name__, "message": getattr(e, "message", str(e))}
                    raise
                finally:
                    self.log.write(json.dumps(rec, sort_keys=True) + "\n")
                    self.log.flush()
        return call

    def state_json(self):
        with self.lock:
            return json.dumps(self.inner.s.dump())


def serve_client(processor, client):
    trans = TTransport.TFramedTransport(client)
    prot = TBinaryProtocol.TBinaryProtocol(trans)
    try:
        while True:
            processor.process(prot, prot)
    except TTransport.TTransportException:
        pass
    except Exception as e:  # never take the server down
        sys.stderr.write("peer: client error: %r\n" % (e,))
    finally:
        try:
            trans.close()
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT (take over a held port)")
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail")
    ap.add_argument("--fail-times", type=int, default=-1, help="-1: always")
    a = ap.parse_args()
    log = open(a.log, "a")
    handler = LoggingHandler(Handler(Store(), a.fail, a.fail_times), log)
    processor = ModelDBService.Processor(handler)
    server = TSocket.TServerSocket(host="127.0.0.1", port=a.port)
    if a.reuse_port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", a.port))
        sock.listen(128)
        server.handle = sock
    else:
        server.listen()
    port = server.handle.getsockname()[1]

    class StateHTTP(BaseHTTPRequestHandler):
        def do_GET(self):
            body = handler.state_json().encode() if self.path == "/state" else b"{}"
            self.send_response(200 if self.path == "/state" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), StateHTTP)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print("READY %d %d" % (port, http.server_address[1]), flush=True)
    while True:
        client = server.accept()
        if client is None:
            time.sleep(0.01)
            continue
        threading.Thread(target=serve_client, args=(processor, client), daemon=True).start()


if __name__ == "__main__":
    main()
