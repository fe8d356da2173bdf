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

* SageMaker Metrics (rest-json; moto has none): PUT /BatchPutMetrics and POST /BatchGetMetrics
  on this endpoint, validated as botocore's model says: a request (or any query in it) that
  breaks the model's constraints answers 400 ValidationException, as AWS validates against its
  model first; in BatchGetMetrics, what only running a query tells (a Period that does not fit
  the XAxisType, a resource that is not a training job, an ARN of another account or region
  than the request's credentials and signing region) is that query's own ValidationError.
  Points are kept in memory by (region, account) — the SigV4 credential scope's region and the
  access key's account as moto maps it (AssumeRole keys land in the role's account) — then trial
  component and metric. A query's ResourceArn names the place: `...:training-job/NAME` reads
  trial component `name-lowercased-aws-training-job` in the ARN's region and account
  (`experiment-trial-component/NAME` reads NAME). IterationNumber groups by step (points
  without one are left out); Timestamp groups by OneMinute/FiveMinute/OneHour buckets, whose
  XAxisValues are the bucket starts in epoch seconds; Start (inclusive) and End (exclusive)
  filter by time; Last is the latest timestamp's value (a tie: the one put last); StdDev is
  the population's. NaN / +-Infinity travel as Smithy's strings "NaN", "Infinity", "-Infinity".
  Hooks: POST /_sm/metrics/status {"resource_arn", "metric", "status": "Truncated" |
  "ValidationError" | "InternalError" (| "Complete" to clear one), "message"?, "keep"? (points
  a Truncated answer keeps; default half), "times"? (answers it applies to; default all)};
  DELETE /_sm/metrics/status clears them. GET /_sm/metrics/calls -> {"BatchGetMetrics":
  [queries in each request, in order], "BatchPutMetrics": requests}; DELETE resets it.
  POST /_sm/metrics/fail {"status": 500 | 503 | 429 | 400 | 403 | 404, "times": n} fails the
  next n BatchGetMetrics requests so (InternalFailure / ServiceUnavailable /
  ThrottlingException / ValidationException / AccessDeniedException /
  UnknownOperationException; they are still logged as calls); DELETE clears it. /moto-api/reset clears all of this.

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
import math
import os
import re
import sys
import threading
import urllib.parse
import uuid

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


# --- SageMaker Metrics (rest-json; moto 5.2.5 has no such service) ------------------------------
# Points, by (region, account) -> trial component -> metric -> [(timestamp s, step|None, value, seq)].
METRICS = {}
METRIC_STATUSES = {}  # (resource ARN, metric) -> {"status", "message", "keep", "times"}
METRIC_CALLS = {"BatchGetMetrics": [], "BatchPutMetrics": 0}
METRIC_FAIL = {"status": 0, "times": 0}
METRICS_LOCK = threading.Lock()
METRIC_SEQ = [0]

TRIAL_COMPONENT_NAME = re.compile(r"[a-z0-9](-*[a-z0-9]){0,119}")
SAGEMAKER_RESOURCE_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:[a-z\-].*/.*")
METRIC_STATS = ("Min", "Max", "Avg", "Count", "StdDev", "Last")
PERIOD_SECONDS = {"OneMinute": 60, "FiveMinute": 300, "OneHour": 3600}
SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
INT32_MAX = 2 ** 31 - 1


class MetricsValidation(Exception):
    pass


def _metrics_reset():
    with METRICS_LOCK:
        METRICS.clear()
        METRIC_STATUSES.clear()
        METRIC_CALLS["BatchGetMetrics"] = []
        METRIC_CALLS["BatchPutMetrics"] = 0
        METRIC_FAIL.update(status=0, times=0)


def _caller_scope(environ):
    """(region, account) of a SigV4-signed request, as moto chooses them: the region of the
    credential scope; the account of MOTO_ACCOUNT_ID, else of the x-moto-account-id header,
    else of the access key (moto's IAM maps the keys STS AssumeRole hands out to the role's
    account), else moto's default account."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/[^/]+/aws4_request", auth)
    access_key, region = (m.group(1), m.group(2)) if m else ("", "us-east-1")
    account = os.environ.get("MOTO_ACCOUNT_ID") or environ.get("HTTP_X_MOTO_ACCOUNT_ID")
    if not account:
        try:
            from moto.iam.models import get_account_id_from
            account = get_account_id_from(access_key)
        except Exception:
            account = "123456789012"
    return region, account


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _metric_value(v, where):
    if isinstance(v, str) and v in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[v]  # Smithy's JSON spelling of NaN / +-Infinity
    if not _is_number(v):
        raise MetricsValidation("Value %r at '%s.value' failed to satisfy constraint: Member must be a number" % (v, where))
    return float(v)


def _json_float(v):
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _put_metrics(scope, body):
    if not isinstance(body, dict):
        raise MetricsValidation("The request body must be a JSON object")
    tc = body.get("TrialComponentName")
    if not isinstance(tc, str):
        raise MetricsValidation("1 validation error detected: Value null at 'trialComponentName' failed to satisfy constraint: Member must not be null")
    if not 1 <= len(tc) <= 120 or not TRIAL_COMPONENT_NAME.fullmatch(tc):
        raise MetricsValidation("1 validation error detected: Value '%s' at 'trialComponentName' failed to satisfy constraint: "
                                "Member must satisfy regular expression pattern: ^[a-z0-9](-*[a-z0-9]){0,119}" % tc)
    data = body.get("MetricData")
    if not isinstance(data, list):
        raise MetricsValidation("1 validation error detected: Value null at 'metricData' failed to satisfy constraint: Member must not be null")
    if not 1 <= len(data) <= 10:
        raise MetricsValidation("1 validation error detected: Value at 'metricData' failed to satisfy constraint: "
                                "Member must have length less than or equal to 10 and greater than or equal to 1 (got %d)" % len(data))
    points = []
    for i, d in enumerate(data):
        where = "metricData.%d.member" % (i + 1)
        if not isinstance(d, dict):
            raise MetricsValidation("Value at '%s' must be a structure" % where)
        for key in ("MetricName", "Timestamp", "Value"):
            if d.get(key) is None:
                raise MetricsValidation("1 validation error detected: Value null at '%s.%s' failed to satisfy constraint: "
                                        "Member must not be null" % (where, key[0].lower() + key[1:]))
        name = d["MetricName"]
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise MetricsValidation("Value %r at '%s.metricName' failed to satisfy constraint: "
                                    "Member must have length between 1 and 255" % (name, where))
        ts = d["Timestamp"]
        if not _is_number(ts) or ts != ts or ts in (float("inf"), float("-inf")):
            raise MetricsValidation("Value %r at '%s.timestamp' failed to satisfy constraint: "
                                    "Member must be epoch seconds" % (ts, where))
        step = d.get("Step")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= INT32_MAX):
            raise MetricsValidation("Value %r at '%s.step' failed to satisfy constraint: "
                                    "Member must have value greater than or equal to 0" % (step, where))
        points.append((name, float(ts), step, _metric_value(d["Value"], where)))
    with METRICS_LOCK:
        series = METRICS.setdefault(scope, {}).setdefault(tc, {})
        for name, ts, step, value in points:
            METRIC_SEQ[0] += 1
            series.setdefault(name, []).append((ts, step, value, METRIC_SEQ[0]))
    return {}


def _trial_component_of(arn):
    """(region, account, trial component) an ARN names, or a reason it names none."""
    parts = arn.split(":", 5)
    region, account, resource = parts[3], parts[4], parts[5]
    kind, _, name = resource.partition("/")
    if kind == "training-job":
        # SageMaker names a training job's trial component so.
        return (region, account), name.lower() + "-aws-training-job", None
    if kind == "experiment-trial-component":
        return (region, account), name, None
    return None, None, "Resource type %s has no metrics" % kind


def _aggregate(values_by_time, stat):
    """values_by_time: [(timestamp, seq, value)] of one group."""
    values = [v for _, _, v in values_by_time]
    n = len(values)
    if stat == "Count":
        return float(n)
    if stat == "Last":
        return max(values_by_time, key=lambda p: (p[0], p[1]))[2]
    if any(v != v for v in values):
        return float("nan")
    if stat == "Min":
        return min(values)
    if stat == "Max":
        return max(values)
    mean = sum(values) / n
    if stat == "Avg":
        return mean
    return math.sqrt(sum((v - mean) * (v - mean) for v in values) / n)  # StdDev, of the population


def _query_metric(q, caller=None):
    """One MetricQuery's result, or a ValidationError result.

    A query that breaks the model's own constraints (a required member, a length, a pattern, an
    enum, a type) fails the whole request with a 400 ValidationException, as AWS validates a
    request against its model before running it; what only running it can tell (a period that
    does not fit the axis, a resource that is not a training job, an ARN of another region than
    the request's) is that query's own ValidationError."""
    def invalid(msg):
        return {"Status": "ValidationError", "Message": msg, "XAxisValues": [], "MetricValues": []}

    if not isinstance(q, dict):
        raise MetricsValidation("1 validation error detected: a metric query must be a structure")
    for key in ("MetricName", "ResourceArn", "MetricStat", "Period", "XAxisType"):
        if not isinstance(q.get(key), str):
            raise MetricsValidation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null" % (key[0].lower() + key[1:]))
    name, arn, stat, period, axis = (q[k] for k in ("MetricName", "ResourceArn", "MetricStat", "Period", "XAxisType"))
    if not 1 <= len(name) <= 255:
        raise MetricsValidation("1 validation error detected: Value '%s' at 'metricName' failed to satisfy constraint: Member must have length between 1 and 255" % name)
    if len(arn) > 2048 or not SAGEMAKER_RESOURCE_ARN.fullmatch(arn):
        raise MetricsValidation("1 validation error detected: Value '%s' at 'resourceArn' failed to satisfy constraint: Member must satisfy regular expression pattern: "
                       "arn:aws[a-z\\-]*:sagemaker:[a-z0-9\\-]*:[0-9]{12}:[a-z\\-].*/.*" % arn)
    if stat not in METRIC_STATS:
        raise MetricsValidation("1 validation error detected: Value '%s' at 'metricStat' failed to satisfy constraint: Member must satisfy enum value set: %s" % (stat, list(METRIC_STATS)))
    if period not in PERIOD_SECONDS and period != "IterationNumber":
        raise MetricsValidation("1 validation error detected: Value '%s' at 'period' failed to satisfy constraint: Member must satisfy enum value set: "
                       "[OneMinute, FiveMinute, OneHour, IterationNumber]" % period)
    if axis not in ("IterationNumber", "Timestamp"):
        raise MetricsValidation("1 validation error detected: Value '%s' at 'xAxisType' failed to satisfy constraint: Member must satisfy enum value set: [IterationNumber, Timestamp]" % axis)
    if (axis == "IterationNumber") != (period == "IterationNumber"):
        return invalid("Period %s cannot be used with XAxisType %s" % (period, axis))
    for key in ("Start", "End"):
        if q.get(key) is not None and (not isinstance(q[key], int) or isinstance(q[key], bool)):
            raise MetricsValidation("1 validation error detected: Value %r at '%s' failed to satisfy constraint: Member must be a long" % (q[key], key.lower()))
    scope, tc, why = _trial_component_of(arn)
    if why:
        return invalid(why)
    if caller is not None and tuple(scope) != tuple(caller):
        return invalid("Resource %s is not in this request's account and region (%s, %s)" % (arn, caller[1], caller[0]))
    start, end = q.get("Start"), q.get("End")
    with METRICS_LOCK:
        points = list(METRICS.get(scope, {}).get(tc, {}).get(name, []))
    points = [p for p in points if (start is None or p[0] >= start) and (end is None or p[0] < end)]
    groups = {}
    for ts, step, value, seq in points:
        if axis == "IterationNumber":
            if step is None:
                continue
            x = step
        else:
            size = PERIOD_SECONDS[period]
            x = int(math.floor(ts / size)) * size
        groups.setdefault(x, []).append((ts, seq, value))
    xs = sorted(groups)
    return {"Status": "Complete", "XAxisValues": xs, "MetricValues": [_aggregate(groups[x], stat) for x in xs]}


def _forced_status(q, result):
    if result["Status"] != "Complete" or not isinstance(q, dict):
        return result
    with METRICS_LOCK:
        forced = METRIC_STATUSES.get((q.get("ResourceArn"), q.get("MetricName")))
        if forced is None:
            return result
        if forced["times"] is not None:
            forced["times"] -= 1
            if forced["times"] <= 0:
                del METRIC_STATUSES[(q.get("ResourceArn"), q.get("MetricName"))]
    status = forced["status"]
    if status == "Truncated":
        keep = forced["keep"] if forced["keep"] is not None else len(result["XAxisValues"]) // 2
        return {"Status": "Truncated", "Message": forced["message"] or "The query returned more data points than allowed; the result is truncated",
                "XAxisValues": result["XAxisValues"][:keep], "MetricValues": result["MetricValues"][:keep]}
    return {"Status": status, "Message": forced["message"] or "%s (forced by the test)" % status, "XAxisValues": [], "MetricValues": []}


def _get_metrics(body, caller=None):
    if not isinstance(body, dict) or not isinstance(body.get("MetricQueries"), list):
        raise MetricsValidation("1 validation error detected: Value null at 'metricQueries' failed to satisfy constraint: Member must not be null")
    queries = body["MetricQueries"]
    if not 1 <= len(queries) <= 100:
        raise MetricsValidation("1 validation error detected: Value at 'metricQueries' failed to satisfy constraint: "
                                "Member must have length less than or equal to 100 and greater than or equal to 1 (got %d)" % len(queries))
    results = []
    for q in queries:
        result = _forced_status(q, _query_metric(q, caller))
        result["MetricValues"] = [_json_float(v) for v in result["MetricValues"]]
        results.append(result)
    return {"MetricQueryResults": results}


def _metrics_answer(status, body, error_type=None):
    headers = [("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return Response(json.dumps(body, allow_nan=False), status=status, headers=headers, mimetype="application/json")


def sagemaker_metrics(environ):
    """BatchPutMetrics / BatchGetMetrics."""
    op = environ["PATH_INFO"].strip("/")
    raw = Request(environ).get_data()
    with METRICS_LOCK:
        try:
            count = len(json.loads(raw or b"{}").get("MetricQueries") or [])
        except Exception:
            count = 0
        if op == "BatchGetMetrics":
            METRIC_CALLS["BatchGetMetrics"].append(count)
            if METRIC_FAIL["times"] > 0:
                METRIC_FAIL["times"] -= 1
                code = {503: "ServiceUnavailable", 429: "ThrottlingException", 400: "ValidationException",
                        403: "AccessDeniedException", 404: "UnknownOperationException"}.get(METRIC_FAIL["status"], "InternalFailure")
                return _metrics_answer(METRIC_FAIL["status"], {"__type": code, "message": "injected by the test: %s" % code}, code)
        else:
            METRIC_CALLS["BatchPutMetrics"] += 1
    try:
        body = json.loads(raw or b"{}")  # accepts bare NaN / Infinity as well as Smithy's strings
    except ValueError as e:
        return _metrics_answer(400, {"__type": "SerializationException", "message": "Malformed JSON body: %s" % e}, "SerializationException")
    try:
        if op == "BatchPutMetrics":
            return _metrics_answer(200, _put_metrics(_caller_scope(environ), body))
        return _metrics_answer(200, _get_metrics(body, _caller_scope(environ)))
    except MetricsValidation as e:
        return _metrics_answer(400, {"__type": "ValidationException", "message": str(e)}, "ValidationException")
    except Exception as e:  # report, never answer a non-JSON page
        return _metrics_answer(500, {"__type": "InternalFailure", "message": "launcher bug: %r" % e}, "InternalFailure")


def metrics_hook(environ):
    """The test hooks under /_sm/metrics/."""
    path, method = environ["PATH_INFO"], environ.get("REQUEST_METHOD")
    body = {}
    if method == "POST":
        try:
            body = json.loads(Request(environ).get_data() or b"{}")
        except ValueError as e:
            return 400, {"error": repr(e)}
    with METRICS_LOCK:
        if path == "/_sm/metrics/status" and method == "POST":
            status = body.get("status")
            key = (body.get("resource_arn"), body.get("metric"))
            if status == "Complete":
                METRIC_STATUSES.pop(key, None)
                return 200, {"ok": True}
            if status not in ("Truncated", "ValidationError", "InternalError") or not all(isinstance(k, str) for k in key):
                return 400, {"error": "need resource_arn, metric and a status of Truncated, ValidationError or InternalError"}
            times = body.get("times")
            METRIC_STATUSES[key] = {"status": status, "message": body.get("message"), "keep": body.get("keep"),
                                    "times": int(times) if times is not None else None}
            return 200, {"ok": True}
        if path == "/_sm/metrics/status" and method == "DELETE":
            METRIC_STATUSES.clear()
            return 200, {"ok": True}
        if path == "/_sm/metrics/calls" and method == "GET":
            return 200, {"BatchGetMetrics": list(METRIC_CALLS["BatchGetMetrics"]), "BatchPutMetrics": METRIC_CALLS["BatchPutMetrics"]}
        if path == "/_sm/metrics/calls" and method == "DELETE":
            METRIC_CALLS["BatchGetMetrics"] = []
            METRIC_CALLS["BatchPutMetrics"] = 0
            return 200, {"ok": True}
        if path == "/_sm/metrics/fail" and method == "POST":
            METRIC_FAIL.update(status=int(body.get("status", 500)), times=int(body.get("times", 1)))
            return 200, {"ok": True}
        if path == "/_sm/metrics/fail" and method == "DELETE":
            METRIC_FAIL.update(status=0, times=0)
            return 200, {"ok": True}
    return 404, {"error": "no hook %s %s" % (method, path)}


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
            _metrics_reset()
        if (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")) in (("PUT", "/BatchPutMetrics"), ("POST", "/BatchGetMetrics")):
            return sagemaker_metrics(environ)(environ, start_response)
        if environ.get("PATH_INFO", "").startswith("/_sm/metrics/"):
            status, body = metrics_hook(environ)
            return Response(json.dumps(body), status=status, mimetype="application/json")(environ, start_response)
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
