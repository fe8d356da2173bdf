"""moto (SageMaker + S3 emulator) for sagesync's tests, on 127.0.0.1.

Wraps moto's WSGI app and adds what the tests need and moto lacks:

* POST /_sm/training-job {"name": NAME, "set": {"TrainingJobStatus": ..., ...}} edits a stored
  training job (moto finishes every job instantly with one fixed metric). Keys are the
  DescribeTrainingJob names; values ending in "Time" are ISO-8601 strings (stored as naive UTC,
  as moto keeps them); "FinalMetricDataList" timestamps likewise; null removes a value.
* Search(Resource=TrainingJob) as the SageMaker API documents it, where moto 5.2.5 falls short:
  every filter of the expression applies (moto stops at the first Tags.* filter), the comparison
  operators GreaterThan[OrEqualTo] / LessThan[OrEqualTo] work on times, SortBy/SortOrder,
  MaxResults (default 10, max 100) and NextToken page the results, and records carry
  "TrainingJobArn" (moto returns "Arn").

* Hyperparameter tuning jobs as SageMaker documents them, where moto 5.2.5 keeps a fixed fake:
  a training job belongs to a tuner when its "TuningJobArn" is set (POST /_sm/training-job with
  {"set": {"TuningJobArn": ARN}}; DescribeTrainingJob and Search then carry it);
  ListTrainingJobsForHyperParameterTuningJob pages its children (MaxResults 1-100, default 10,
  NextToken, StatusEquals, SortBy incl. FinalObjectiveMetricValue, which drops children without
  a value; by name, ascending, by default);
  DescribeHyperParameterTuningJob and ListHyperParameterTuningJobs compute the status and
  objective counters and the best training job from the children (LastModifiedTime stays the
  tuner's own: the model documents it as the time its status changed). POST
  /_sm/tuning-job {"name": NAME, "set": {...}} edits a tuner as /_sm/training-job edits a job.
  ListTags on a tuner created without tags answers an empty list (moto answers 500).

* SageMaker Pipelines executions as SageMaker documents them, where moto 5.2.5 lists every
  execution in one page and has no steps: ListPipelineExecutions filters by CreatedAfter /
  CreatedBefore, sorts (CreationTime by default, descending) and pages (MaxResults 1-100,
  default 10); ListPipelineExecutionSteps serves the steps set by POST /_sm/pipeline-execution
  {"arn": ARN, "set": {"Steps": [...], "PipelineExecutionStatus": ..., "LastModifiedTime": ...}}
  (steps as PipelineExecutionStep documents, newest first as SageMaker answers by default; times
  as ISO-8601 strings). ListTags on a pipeline created without tags answers an empty list.

* ListTags on a versioned model package (moto answers 500), DeleteModelPackage (moto 5.2.5 has
  none; a package not found answers SageMaker's ValidationException), and Search filters on
  nested properties (`ModelArtifacts.S3ModelArtifacts`).

* POST /_sm/fault {"target": "SageMaker.ListPipelines", "status": 400, "code": "AccessDeniedException"}
  makes every later request with that X-Amz-Target fail so (an empty "code" clears it): a role
  without a permission, for the tests of what else still works.

* STS AssumeRole of a role whose name contains `denied` answers AccessDenied (moto grants every
  role): a member account whose role cannot be assumed, for the tests of what else still works.

* CloudWatch over the Smithy RPC v2 CBOR protocol, which current AWS SDKs (aws-sdk-cloudwatch,
  botocore) choose first and moto 5.2.5 does not speak: such requests
  (POST /service/GraniteServiceVersion20100801/operation/<Op>) are translated to the JSON
  protocol moto does speak, and the replies back to CBOR (timestamps as CBOR tag 1).

* DynamoDB requests are served one at a time. moto evaluates a conditional write's condition
  and applies its update without a lock, so under a threaded server two racing conditional
  UpdateItems on one item could both succeed; DynamoDB itself applies each item write
  atomically. Serialising them gives the tests DynamoDB's semantics.

Usage: python moto_launcher.py [--port 0]   -> prints "READY <port>" when serving.
Reset between tests with POST /moto-api/reset.
"""
import argparse
import datetime as dt
import gzip
import io
import json
import re
import sys
import threading
import urllib.parse

import cbor2

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sagemaker import models as smm
from moto.sagemaker import responses as smr
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


def parse_time(v):
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc).replace(tzinfo=None)
    s = str(v).strip()
    try:
        return dt.datetime.fromtimestamp(float(s), dt.timezone.utc).replace(tzinfo=None)
    except ValueError:
        pass
    t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


def snake(name):
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i > 0 and not name[i - 1].isupper():
            out += "_"
        out += c.lower()
    return out


def all_training_jobs():
    for account in smm.sagemaker_backends.values():
        for backend in account.values():
            for job in backend.training_jobs.values():
                yield job


def edit_job(body):
    name = body["name"]
    job = next((j for j in all_training_jobs() if j.training_job_name == name), None)
    if job is None:
        return 404, {"error": "no training job %s" % name}
    for key, value in body.get("set", {}).items():
        if key.endswith("Time") and value is not None:
            value = parse_time(value)
        if key == "FinalMetricDataList" and value is not None:
            value = [dict(m, Timestamp=parse_time(m.get("Timestamp"))) for m in value]
        setattr(job, snake(key), value)
    return 200, {"ok": True}


# --- Search ---------------------------------------------------------------------------------
_original_search = smm.SageMakerModelBackend.search


def _job_record(job):
    rec = {k: v for k, v in job.response_object.items()}
    rec["Tags"] = list(job.tags)
    return rec


def _compare(actual, op, expected):
    if isinstance(actual, dt.datetime):
        expected = parse_time(expected)
    if op == "Equals":
        return actual == expected
    if op == "NotEquals":
        return actual != expected
    if op == "Contains":
        return expected in (actual or "")
    if actual is None:
        return False
    if op == "GreaterThan":
        return actual > expected
    if op == "GreaterThanOrEqualTo":
        return actual >= expected
    if op == "LessThan":
        return actual < expected
    if op == "LessThanOrEqualTo":
        return actual <= expected
    if op == "Exists":
        return actual is not None
    raise smm.ValidationError(message="Unsupported operator %s" % op)


def _matches(job, expr):
    for f in (expr or {}).get("Filters", []):
        name, op, value = f["Name"], f.get("Operator", "Equals"), f.get("Value")
        if name.startswith("Tags."):
            key = name[5:]
            actual = next((t["Value"] for t in job.tags if t["Key"] == key), None)
        elif "." in name:
            # A nested property (ModelArtifacts.S3ModelArtifacts), by the record's shape.
            actual = job.response_object
            for part in name.split("."):
                actual = actual.get(part) if isinstance(actual, dict) else None
        else:
            attr = snake(name)
            if not hasattr(job, attr):
                raise smm.ValidationError(message="Unknown property name: %s" % name)
            actual = getattr(job, attr)
        if not _compare(actual, op, value):
            return False
    return True


def search(self, resource=None, search_expression=None, sort_by=None, sort_order=None, max_results=None, next_token=None):
    if resource != "TrainingJob":
        return _original_search(self, resource=resource, search_expression=search_expression)
    jobs = [j for j in self.training_jobs.values() if _matches(j, search_expression)]
    key = snake(sort_by or "CreationTime")
    jobs.sort(key=lambda j: (getattr(j, key, None) is None, getattr(j, key, None) or 0, j.arn), reverse=(sort_order or "Descending") == "Descending")
    start = int(next_token) if next_token else 0
    size = min(int(max_results or 10), 100)
    page = jobs[start:start + size]
    nxt = str(start + size) if start + size < len(jobs) else None
    return {"Results": [{"TrainingJob": _job_record(j)} for j in page], "NextToken": nxt}


def search_response(self):
    return smr.ActionResult(self.sagemaker_backend.search(
        resource=self._get_param("Resource"),
        search_expression=self._get_param("SearchExpression"),
        sort_by=self._get_param("SortBy"),
        sort_order=self._get_param("SortOrder"),
        max_results=self._get_param("MaxResults"),
        next_token=self._get_param("NextToken"),
    ))


smm.SageMakerModelBackend.search = search
smr.SageMakerResponse.search = search_response


# --- Tuning jobs ----------------------------------------------------------------------------
TUNED_RANGE_KINDS = ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")


def all_tuning_jobs():
    for account in smm.sagemaker_backends.values():
        for backend in account.values():
            for t in backend.hyper_parameter_tuning_jobs.values():
                yield backend, t


def edit_tuner(body):
    name = body["name"]
    found = next((t for _, t in all_tuning_jobs() if t.hyper_parameter_tuning_job_name == name), None)
    if found is None:
        return 404, {"error": "no tuning job %s" % name}
    for key, value in body.get("set", {}).items():
        if key.endswith("Time") and value is not None:
            value = parse_time(value)
        setattr(found, snake(key), value)
    return 200, {"ok": True}


def _objective(tuner):
    obj = (tuner.hyper_parameter_tuning_job_config or {}).get("HyperParameterTuningJobObjective") or {}
    return obj.get("Type"), obj.get("MetricName")


def _children(backend, tuner):
    return [j for j in backend.training_jobs.values() if getattr(j, "tuning_job_arn", None) == tuner.arn]


def _objective_value(tuner, job):
    _, metric = _objective(tuner)
    if job.training_job_status != "Completed":
        return None
    return next((m.get("Value") for m in (getattr(job, "final_metric_data_list", None) or []) if m.get("MetricName") == metric), None)


def _child_summary(tuner, job):
    typ, metric = _objective(tuner)
    ranges = (tuner.hyper_parameter_tuning_job_config or {}).get("ParameterRanges") or {}
    tuned = {r["Name"] for kind in TUNED_RANGE_KINDS for r in ranges.get(kind, []) or []}
    s = {
        "TrainingJobName": job.training_job_name,
        "TrainingJobArn": job.arn,
        "TuningJobName": tuner.hyper_parameter_tuning_job_name,
        "CreationTime": job.creation_time,
        "TrainingJobStatus": job.training_job_status,
        "TunedHyperParameters": {k: v for k, v in (job.hyper_parameters or {}).items() if k in tuned},
    }
    for key, attr in (("TrainingStartTime", "training_start_time"), ("TrainingEndTime", "training_end_time"), ("FailureReason", "failure_reason")):
        if getattr(job, attr, None):
            s[key] = getattr(job, attr)
    value = _objective_value(tuner, job)
    if value is not None:
        s["FinalHyperParameterTuningJobObjectiveMetric"] = {"Type": typ, "MetricName": metric, "Value": value}
        s["ObjectiveStatus"] = "Succeeded"
    elif job.training_job_status in ("Completed", "Failed", "Stopped"):
        s["ObjectiveStatus"] = "Failed"
    else:
        s["ObjectiveStatus"] = "Pending"
    return s


def _tuner_state(backend, tuner):
    kids = _children(backend, tuner)
    statuses = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
    objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for j in kids:
        st = j.training_job_status
        bucket = {"Failed": "NonRetryableError"}.get(st, st)
        bucket = bucket if bucket in statuses else "InProgress"
        statuses[bucket] += 1
        objectives[_child_summary(tuner, j)["ObjectiveStatus"]] += 1
    typ, _ = _objective(tuner)
    scored = [(j, _objective_value(tuner, j)) for j in kids]
    scored = [(j, v) for j, v in scored if v is not None]
    best = None
    if scored:
        pick = max if typ == "Maximize" else min
        best = _child_summary(tuner, pick(scored, key=lambda jv: jv[1])[0])
    # LastModifiedTime stays the tuner's own: botocore's model documents it as the time the
    # tuning job's status changed, which its children finishing does not move.
    return statuses, objectives, best, tuner.last_modified_time


def _tuner_fields(backend, tuner, doc):
    statuses, objectives, best, last_modified = _tuner_state(backend, tuner)
    doc["TrainingJobStatusCounters"] = statuses
    doc["ObjectiveStatusCounters"] = objectives
    doc["LastModifiedTime"] = last_modified
    doc.pop("BestTrainingJob", None)
    doc.pop("OverallBestTrainingJob", None)
    if best is not None:
        doc["BestTrainingJob"] = best
    for k in [k for k, v in doc.items() if v is None]:
        del doc[k]
    if "HyperParameterTuningEndTime" in doc and tuner.hyper_parameter_tuning_job_status == "InProgress":
        del doc["HyperParameterTuningEndTime"]
    return doc


def _find_tuner(self, name):
    t = self.hyper_parameter_tuning_jobs.get(name)
    if t is None:
        raise smm.ResourceNotFound(message="Amazon SageMaker can't find a tuning job with name %s" % name)
    return t


def describe_tuner_response(self):
    b = self.sagemaker_backend
    t = _find_tuner(b, self._get_param("HyperParameterTuningJobName"))
    doc = _tuner_fields(b, t, t.describe())
    doc.pop("TuningJobCompletionDetails", None)
    doc.pop("ConsumedResources", None)
    return smr.ActionResult(doc)


def _page(items, next_token, max_results, default=10):
    start = int(next_token) if next_token else 0
    if max_results is not None and not 1 <= int(max_results) <= 100:
        raise smm.ValidationError(message="1 validation error detected: Value '%s' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100" % max_results)
    size = int(max_results or default)
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)


def list_tuners_response(self):
    b = self.sagemaker_backend
    g = self._get_param
    rows = []
    for t in b.hyper_parameter_tuning_jobs.values():
        doc = _tuner_fields(b, t, t.summary())
        lm = doc["LastModifiedTime"]
        if g("NameContains") and g("NameContains") not in t.hyper_parameter_tuning_job_name:
            continue
        if g("StatusEquals") and g("StatusEquals") != t.hyper_parameter_tuning_job_status:
            continue
        if g("CreationTimeAfter") is not None and not t.creation_time > parse_time(g("CreationTimeAfter")):
            continue
        if g("CreationTimeBefore") is not None and not t.creation_time < parse_time(g("CreationTimeBefore")):
            continue
        if g("LastModifiedTimeAfter") is not None and not lm > parse_time(g("LastModifiedTimeAfter")):
            continue
        if g("LastModifiedTimeBefore") is not None and not lm < parse_time(g("LastModifiedTimeBefore")):
            continue
        rows.append(doc)
    # SageMaker's defaults: by name, ascending, 10 per page.
    key = {"Name": "HyperParameterTuningJobName", "Status": "HyperParameterTuningJobStatus", "CreationTime": "CreationTime"}[g("SortBy") or "Name"]
    rows.sort(key=lambda d: (d[key], d["HyperParameterTuningJobArn"]), reverse=(g("SortOrder") or "Ascending") == "Descending")
    page, nxt = _page(rows, g("NextToken"), g("MaxResults"))
    out = {"HyperParameterTuningJobSummaries": page}
    if nxt:
        out["NextToken"] = nxt
    return smr.ActionResult(out)


def list_tuner_children_response(self):
    b = self.sagemaker_backend
    g = self._get_param
    t = _find_tuner(b, g("HyperParameterTuningJobName"))
    rows = [_child_summary(t, j) for j in _children(b, t)]
    if g("StatusEquals"):
        rows = [r for r in rows if r["TrainingJobStatus"] == g("StatusEquals")]
    # SageMaker's defaults: by name, ascending, 10 per page.
    sort_by = g("SortBy") or "Name"
    if sort_by == "FinalObjectiveMetricValue":
        # As SageMaker does: children without an objective value are left out.
        rows = [r for r in rows if "FinalHyperParameterTuningJobObjectiveMetric" in r]
        key = lambda r: (r["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], r["TrainingJobArn"])
    else:
        field = {"Name": "TrainingJobName", "Status": "TrainingJobStatus"}.get(sort_by, "CreationTime")
        key = lambda r: (r[field], r["TrainingJobArn"])
    rows.sort(key=key, reverse=(g("SortOrder") or "Ascending") == "Descending")
    page, nxt = _page(rows, g("NextToken"), g("MaxResults"))
    out = {"TrainingJobSummaries": page}
    if nxt:
        out["NextToken"] = nxt
    return smr.ActionResult(out)


_tuner_init = smm.HyperParameterTuningJob.__init__


def _tuner_init_with_tags(self, *args, **kwargs):
    _tuner_init(self, *args, **kwargs)
    # moto keeps None for a tuner created without tags, and ListTags on it answers 500.
    self.tags = self.tags or []


smm.HyperParameterTuningJob.__init__ = _tuner_init_with_tags
smr.SageMakerResponse.describe_hyper_parameter_tuning_job = describe_tuner_response
smr.SageMakerResponse.list_hyper_parameter_tuning_jobs = list_tuners_response
smr.SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = list_tuner_children_response


# --- Pipelines ------------------------------------------------------------------------------
PIPELINE_STEPS = {}
FAULTS = {}


def all_pipeline_executions():
    for account in smm.sagemaker_backends.values():
        for backend in account.values():
            for p in backend.pipelines.values():
                for e in p.pipeline_executions.values():
                    yield p, e


def _step_doc(step):
    out = {}
    for k, v in step.items():
        out[k] = parse_time(v) if k.endswith("Time") and isinstance(v, str) else v
    return out


def edit_execution(body):
    arn = body["arn"]
    found = next((e for _, e in all_pipeline_executions() if e.arn == arn), None)
    if found is None:
        return 404, {"error": "no pipeline execution %s" % arn}
    for key, value in body.get("set", {}).items():
        if key == "Steps":
            PIPELINE_STEPS[arn] = [_step_doc(st) for st in value or []]
            continue
        if key.endswith("Time") and value is not None:
            value = parse_time(value)
        setattr(found, snake(key), value)
    return 200, {"ok": True}


def list_executions_response(self):
    b = self.sagemaker_backend
    g = self._get_param
    name = g("PipelineName")
    pipeline = b.pipelines.get(name) or next((p for p in b.pipelines.values() if p.arn == name), None)
    if pipeline is None:
        raise smm.ValidationError(message="Pipeline '%s' does not exist." % name)
    rows = []
    for arn, e in pipeline.pipeline_executions.items():
        if g("CreatedAfter") is not None and not e.creation_time > parse_time(g("CreatedAfter")):
            continue
        if g("CreatedBefore") is not None and not e.creation_time < parse_time(g("CreatedBefore")):
            continue
        row = {
            "PipelineExecutionArn": arn,
            "StartTime": e.start_time,
            "PipelineExecutionStatus": e.pipeline_execution_status,
            "PipelineExecutionDisplayName": e.pipeline_execution_display_name,
        }
        if e.pipeline_execution_description:
            row["PipelineExecutionDescription"] = e.pipeline_execution_description
        if e.pipeline_execution_failure_reason:
            row["PipelineExecutionFailureReason"] = e.pipeline_execution_failure_reason
        rows.append((e.creation_time, row))
    # SageMaker's default: by creation time, descending.
    key = {"CreationTime": lambda r: (r[0], r[1]["PipelineExecutionArn"]), "PipelineExecutionArn": lambda r: r[1]["PipelineExecutionArn"]}[g("SortBy") or "CreationTime"]
    rows.sort(key=key, reverse=(g("SortOrder") or "Descending") == "Descending")
    page, nxt = _page([r for _, r in rows], g("NextToken"), g("MaxResults"))
    out = {"PipelineExecutionSummaries": page}
    if nxt:
        out["NextToken"] = nxt
    return smr.ActionResult(out)


def describe_execution_response(self):
    b = self.sagemaker_backend
    doc = b.describe_pipeline_execution(pipeline_execution_arn=self._get_param("PipelineExecutionArn"))
    e = next(e for _, e in all_pipeline_executions() if e.arn == doc["PipelineExecutionArn"])
    doc["PipelineExecutionStatus"] = e.pipeline_execution_status
    doc["LastModifiedTime"] = e.last_modified_time
    if e.pipeline_execution_failure_reason:
        doc["FailureReason"] = e.pipeline_execution_failure_reason
    else:
        doc.pop("FailureReason", None)
    if not doc.get("PipelineExperimentConfig"):
        doc.pop("PipelineExperimentConfig", None)
    for k in [k for k, v in doc.items() if v is None]:
        del doc[k]
    return smr.ActionResult(doc)


def list_execution_steps_response(self):
    g = self._get_param
    arn = g("PipelineExecutionArn")
    if not any(e.arn == arn for _, e in all_pipeline_executions()):
        raise smm.ResourceNotFound(message="Pipeline execution with ARN %s does not exist" % arn)
    steps = list(PIPELINE_STEPS.get(arn, []))
    # SageMaker's default: newest first.
    if (g("SortOrder") or "Descending") == "Ascending":
        steps.reverse()
    page, nxt = _page(steps, g("NextToken"), g("MaxResults"))
    out = {"PipelineExecutionSteps": page}
    if nxt:
        out["NextToken"] = nxt
    return smr.ActionResult(out)


_pipeline_init = smm.FakePipeline.__init__


def _pipeline_init_with_tags(self, *args, **kwargs):
    _pipeline_init(self, *args, **kwargs)
    self.tags = self.tags or []


smm.FakePipeline.__init__ = _pipeline_init_with_tags

_resource_from_arn = smm.SageMakerModelBackend._get_resource_from_arn


def _resource_from_arn_with_packages(self, arn):
    # moto splits an ARN's resource at "/" into two parts, which a versioned package's
    # ("model-package/GROUP/VERSION") is not: ListTags on it answers 500.
    if ":model-package/" in arn:
        package = self.model_packages.get(arn)
        if package is None:
            raise smm.ValidationError(message="Could not find model package %s" % arn)
        if getattr(package, "tags", None) is None:
            package.tags = []
        return package
    return _resource_from_arn(self, arn)


smm.SageMakerModelBackend._get_resource_from_arn = _resource_from_arn_with_packages


def delete_model_package_response(self):
    b = self.sagemaker_backend
    name = self._get_param("ModelPackageName")
    key = b.model_package_name_mapping.get(name, name)
    if key not in b.model_packages:
        raise smm.ValidationError(message="Model Package %s does not exist." % name)
    del b.model_packages[key]
    for k in [k for k, v in b.model_package_name_mapping.items() if v == key]:
        del b.model_package_name_mapping[k]
    return smr.ActionResult({})


smr.SageMakerResponse.delete_model_package = delete_model_package_response
smr.SageMakerResponse.list_pipeline_executions = list_executions_response
smr.SageMakerResponse.describe_pipeline_execution = describe_execution_response
smr.SageMakerResponse.list_pipeline_execution_steps = list_execution_steps_response


# --- CloudWatch: Smithy RPC v2 CBOR <-> JSON ---------------------------------------------------
RPCV2_PATH = re.compile(r"^/service/(?P<service>[A-Za-z0-9]+)/operation/(?P<op>[A-Za-z0-9]+)$")


def _to_json(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.timestamp()
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, bytes):
        import base64
        return base64.b64encode(v).decode()
    return v


def _is_time_key(k):
    return k in ("Timestamp", "Timestamps", "StartTime", "EndTime", "StateUpdatedTimestamp", "AlarmConfigurationUpdatedTimestamp", "LastModified", "CreationDate")


def _to_cbor(v, time=False):
    if isinstance(v, dict):
        return {k: _to_cbor(x, _is_time_key(k)) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cbor(x, time) for x in v]
    if time and isinstance(v, (int, float)) and not isinstance(v, bool):
        return cbor2.CBORTag(1, float(v))
    return v


def rpcv2_cbor(moto_app, environ, start_response):
    m = RPCV2_PATH.match(environ.get("PATH_INFO", ""))
    raw = Request(environ).get_data()
    if "gzip" in environ.get("HTTP_CONTENT_ENCODING", ""):
        # The SDKs compress large PutMetricData bodies.
        raw = gzip.decompress(raw)
    body = cbor2.loads(raw) if raw else {}
    data = json.dumps(_to_json(body)).encode()
    inner = dict(environ)
    inner["PATH_INFO"] = "/"
    inner["CONTENT_TYPE"] = "application/x-amz-json-1.0"
    inner["CONTENT_LENGTH"] = str(len(data))
    inner["HTTP_X_AMZ_TARGET"] = "%s.%s" % (m.group("service"), m.group("op"))
    inner.pop("HTTP_SMITHY_PROTOCOL", None)
    inner.pop("HTTP_CONTENT_ENCODING", None)
    inner["wsgi.input"] = io.BytesIO(data)
    captured = {}

    def capture(status, headers, exc_info=None):
        captured["status"] = status
        captured["headers"] = headers
        return lambda chunk: None

    out = b"".join(moto_app(inner, capture))
    try:
        payload = json.loads(out) if out.strip() else {}
    except ValueError:
        payload = {"__type": "InternalFailure", "message": out.decode("utf-8", "replace")[:500]}
    encoded = cbor2.dumps(_to_cbor(payload))
    headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() not in ("content-type", "content-length")]
    headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), ("Content-Length", str(len(encoded)))]
    start_response(captured.get("status", "500 Internal Server Error"), headers)
    return [encoded]


DYNAMODB_LOCK = threading.Lock()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/_sm/training-job" and environ.get("REQUEST_METHOD") == "POST":
            req = Request(environ)
            try:
                status, body = edit_job(json.loads(req.get_data() or b"{}"))
            except Exception as e:  # report, never crash the server
                status, body = 400, {"error": repr(e)}
            return Response(json.dumps(body), status=status, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO") == "/_sm/tuning-job" and environ.get("REQUEST_METHOD") == "POST":
            req = Request(environ)
            try:
                status, body = edit_tuner(json.loads(req.get_data() or b"{}"))
            except Exception as e:  # report, never crash the server
                status, body = 400, {"error": repr(e)}
            return Response(json.dumps(body), status=status, mimetype="application/json")(environ, start_response)
        if environ.get("PATH_INFO") == "/moto-api/reset":
            PIPELINE_STEPS.clear()
            FAULTS.clear()
        if environ.get("PATH_INFO") == "/_sm/fault" and environ.get("REQUEST_METHOD") == "POST":
            body = json.loads(Request(environ).get_data() or b"{}")
            if body.get("code"):
                FAULTS[body["target"]] = (int(body.get("status", 400)), body["code"])
            else:
                FAULTS.pop(body.get("target"), None)
            return Response(json.dumps({"ok": True}), status=200, mimetype="application/json")(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST" and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            # Read, then put back for moto: the body is a stream.
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
            if form.get("Action") == "AssumeRole" and "denied" in form.get("RoleArn", ""):
                body = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                        '<Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole on resource: %s'
                        '</Message></Error><RequestId>denied</RequestId></ErrorResponse>' % form.get("RoleArn"))
                return Response(body, status=403, mimetype="text/xml")(environ, start_response)
        fault = FAULTS.get(environ.get("HTTP_X_AMZ_TARGET", ""))
        if fault is not None:
            status, code = fault
            body = json.dumps({"__type": code, "message": "injected by the test: %s" % code})
            return Response(body, status=status, mimetype="application/x-amz-json-1.1")(environ, start_response)
        if environ.get("PATH_INFO") == "/_sm/pipeline-execution" and environ.get("REQUEST_METHOD") == "POST":
            req = Request(environ)
            try:
                status, body = edit_execution(json.loads(req.get_data() or b"{}"))
            except Exception as e:  # report, never crash the server
                status, body = 400, {"error": repr(e)}
            return Response(json.dumps(body), status=status, mimetype="application/json")(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST" and RPCV2_PATH.match(environ.get("PATH_INFO", "")):
            return rpcv2_cbor(moto_app, environ, start_response)
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB_LOCK:
                # Drain the response while holding the lock: the write happens as it is produced.
                body = b"".join(moto_app(environ, start_response))
            return [body]
        return moto_app(environ, start_response)

    server = make_server("127.0.0.1", a.port, app, threaded=True)
    print("READY %d" % server.server_port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
